"""The console commands (`glcic-train`, `glcic-eval`, ...): thin absl
programs over the package's functions, all started by `launch.run`. The
only package code that defines flags."""
