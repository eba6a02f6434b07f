"""Completion of people's own photos: image and mask files (`images`,
`masks`), compositing the prediction into the known pixels
(`compositing`), Poisson blending (`poisson`) and a loaded generator
(`completer`)."""
