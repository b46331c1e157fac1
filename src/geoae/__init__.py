"""geoae: how convolutional autoencoders encode and decode size and position.

A runnable companion to Newson, Almansa, Gousseau & Ladjal, *Processing Simple Geometric Attributes with
Autoencoders*, JMIV 62, 293-312 (2020): data generators with ground truth (``geoae.data``), the paper's
autoencoders and hand-crafted networks (``geoae.models``), the closed-form decoding theory
(``geoae.theory``), a reproducible trainer (``geoae.train``) and the paper's experiments
(``geoae.experiments``, run by ``geoae reproduce``).
"""

__version__ = "0.1.0"
