"""Build hooks that pyproject.toml cannot express: the cffi frame codec (and later the Cython kernel)."""

from setuptools import setup

setup(cffi_modules=["native/_framecodec_build.py:ffibuilder"])
