"""Honest stand-ins for what this machine lacks (TensorRT's Python API, trtexec, a CUDA GPU), used by the tests."""
