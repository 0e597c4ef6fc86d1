"""Tickets in other formats' terms: NIR nodes (:mod:`.nodes`), snnlth's architectures as NIR graphs (:mod:`.models`)
and adapted networks made of standard layers (:mod:`.chain`). :mod:`snnlth.nir_export` is the public entry."""
