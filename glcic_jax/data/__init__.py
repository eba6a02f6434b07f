"""What the model is fed: image sources (`sources`), decoding and the
random crop (`decoding`), mmagic's holes (`holes`), the random words behind
crops and holes (`randomness`), the positions each process reads
(`positions`), the tf.data pipeline (`pipeline`) and device-made images
for benchmarks (`synthetic`).

The only package code that imports TensorFlow, always through
`tf_runtime`, which keeps it off the accelerators. This file imports
nothing heavy: `glcic_jax.inpaint` reads its image extensions and holes.
"""

# TensorFlow's settings where the process has none: C++ logs of errors only
# (decoding PNGs with unusual colour profiles warns per image) and no oneDNN
# notice (TensorFlow only decodes and resizes images). TensorFlow, and XLA
# beside it, read them once, when the first of them loads, so the commands
# set them at start-up and `tf_runtime` before its import.
TF_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}

# The files every reader of the project decodes: TensorFlow's decode_image
# (training, evaluation) and PIL (completion). Lower case, with the dot.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
