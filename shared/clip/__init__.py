"""CLIP, the image and text model: the encoder (torch, or ONNX Runtime for the image tower), the
registry of models and their dimensions, the one thread torch runs on, and the published
checkpoints fetched once into the cache folder (`weights`).

Workers only: the API never imports `encoder` or `onnx_runtime` (and with them torch);
`registry` is plain Redis and is safe anywhere."""
