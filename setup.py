"""Build hooks that pyproject.toml cannot express: the cffi frame codec and the Cython planner kernel."""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup


def kernel_flags() -> tuple[list[str], list[str]]:
    # The same switches as the codec's (native/_framecodec_build.py). -ffp-contract=off: no fused
    # multiply-add, so scores match the Python reference bit for bit. -fno-sanitize-recover: a UBSan
    # report ends the process, as an ASan one does.
    if os.environ.get("CUMULO_NATIVE_SANITIZE") == "1":
        return (["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
                 "-fno-sanitize-recover=undefined", "-ffp-contract=off"],
                ["-fsanitize=address,undefined"])
    if os.environ.get("CUMULO_NATIVE_DEBUG") == "1":
        return ["-O0", "-g", "-ffp-contract=off"], []
    return ["-O3", "-ffp-contract=off"], []


_cflags, _ldflags = kernel_flags()
setup(
    cffi_modules=["native/_framecodec_build.py:ffibuilder"],
    ext_modules=cythonize(
        [Extension("native._plannerkernel", ["native/plannerkernel.pyx"], extra_compile_args=_cflags,
                   extra_link_args=_ldflags)],
        compiler_directives={"language_level": "3"}, quiet=True),
)
