"""What the model is fed: image sources (`sources`), mmagic's holes
(`holes`), the random words behind crops and holes (`randomness`) and the
tf.data pipeline (`pipeline`).

The only package code that imports TensorFlow, always through
`tf_runtime`, which keeps it off the accelerators. This file imports
nothing heavy: `glcic_jax.inpaint` reads its image extensions and holes.
"""

# The files every reader of the project decodes: TensorFlow's decode_image
# (training, evaluation) and PIL (completion). Lower case, with the dot.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
