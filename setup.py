"""Build of xentc's Cython extension: the Extension list and the OpenMP probe.

Metadata lives in pyproject.toml.  OpenMP is probed by compiling, linking and
running a tiny program with the compiler setuptools is about to use:

    XENTC_OPENMP=auto     (default) use OpenMP when the probe passes, else build
                          serially and say so (xentc.openmp_enabled() is False)
    XENTC_OPENMP=require  a failing probe is a build error (CI sets this)
    XENTC_OPENMP=off      build serially without probing

A sanitizer build, for CI and for hunting memory bugs (GCC or Clang only):

    XENTC_SANITIZE=address,undefined   (or 1) compile and link with
                          -fsanitize=address,undefined -fno-omit-frame-pointer -g
                          -fno-sanitize-recover=undefined (a UBSan report aborts,
                          as an ASan one does); XENTC_SANITIZE=address or
                          XENTC_SANITIZE=undefined picks one of them
    XENTC_SANITIZE=0      (or unset, empty, off) a normal build

The ASan runtime must be the first library the process loads, and Python is
not built with it, so preload it (CPython leaks by design at exit, hence no
leak checking); .ci/run's sanitizer stage shows the options it uses and why:

    export LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0
    python -P -m pytest tests

Such a build is for testing only: never ship it.

The C files of an extension compile in parallel, on as many threads as the
process has CPUs, or XENTC_BUILD_JOBS=N (1: one after another).

No -march=native and no -ffast-math: wheels must run on any x86-64 / arm64
CPU, and finite-math would break the -inf / NaN semantics of the kernels.
"""
import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CompileError

OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    #include <stdio.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel num_threads(2) reduction(+:n)
        n += 1;
        printf("%d\\n", n);
        return n == 2 ? 0 : 1;
    }
    """
)


def openmp_flags(compiler):
    """(compile flags, link flags) that enable OpenMP for this compiler."""
    if compiler.compiler_type == "msvc":
        return ["/openmp"], []
    if sys.platform == "darwin":
        # Apple clang needs libomp (e.g. from Homebrew) and the preprocessor flag.
        return ["-Xpreprocessor", "-fopenmp"], ["-lomp"]
    return ["-fopenmp"], ["-fopenmp"]


def probe_openmp(compiler, cflags, ldflags):
    """Compile, link and run OPENMP_PROBE; return (ok, reason)."""
    tmp = tempfile.mkdtemp(prefix="xentc-omp-")
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(OPENMP_PROBE)
        objs = compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
        exe = os.path.join(tmp, "probe")
        compiler.link_executable(objs, exe, extra_postargs=ldflags)
        if compiler.exe_extension:
            exe += compiler.exe_extension
        run = subprocess.run([exe], capture_output=True, text=True, timeout=60)
        if run.returncode != 0:
            return False, f"probe program exited with {run.returncode}: {run.stdout.strip()}"
        return True, "probe compiled, linked and ran with 2 threads"
    except Exception as exc:  # any compiler or link error means no OpenMP
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


SANITIZERS = ("address", "undefined")


def sanitize_flags(value, compiler_type):
    """Compile/link flags for XENTC_SANITIZE=value (see the docstring); [] for none."""
    value = value.strip().lower()
    if value in ("", "0", "off"):
        return []
    names = list(SANITIZERS) if value == "1" else [v.strip() for v in value.split(",")]
    bad = [n for n in names if n not in SANITIZERS]
    if bad or not names:
        raise SystemExit(
            f"XENTC_SANITIZE must be 1, 0, off, or a comma-separated list of {', '.join(SANITIZERS)}"
            f" (e.g. XENTC_SANITIZE=address,undefined), got {value!r}")
    if compiler_type == "msvc":
        raise SystemExit("xentc: XENTC_SANITIZE needs GCC or Clang, not MSVC")
    flags = [f"-fsanitize={','.join(names)}", "-fno-omit-frame-pointer", "-g"]
    if "undefined" in names:
        # UBSan only prints and goes on by default; CI wants every report to fail.
        # Python's CFLAGS carry -fwrapv (signed overflow wraps, so UBSan would not
        # check it); -fno-wrapv after them turns the check on: the kernels must
        # not rely on wrapping (the exp's bit tricks use unsigned lanes).
        flags += ["-fno-sanitize-recover=undefined", "-fno-wrapv"]
    return flags


def compile_in_parallel(compiler, jobs):
    """Make compiler.compile compile its sources on up to `jobs` threads (each
    runs the compiler as a subprocess); objects come back in source order.
    xentc._kernels is four C files (Cython's and the row kernels' three, the
    AVX2 one the largest); compiled one after another they took most of the
    build."""
    serial = compiler.compile

    def one_or_o2(sources, *args, **kwargs):
        """serial, and for a file the compiler fails on at -O3, again at -O2 (see OPT)."""
        try:
            return serial(sources, *args, **kwargs)
        except CompileError:
            post = kwargs.get("extra_postargs") or []
            if "-O3" not in post:
                raise
            print(f"xentc: {sources[0]} failed to compile at -O3; trying -O2", file=sys.stderr)
            kwargs["extra_postargs"] = ["-O2" if f == "-O3" else f for f in post]
            return serial(sources, *args, **kwargs)

    def compile(sources, *args, **kwargs):
        if jobs <= 1 or len(sources) <= 1:
            return [obj for src in sources for obj in one_or_o2([src], *args, **kwargs)]
        # the objects' folders first, here: distutils' mkpath is not thread-safe
        output_dir = kwargs.get("output_dir", args[0] if args else None)
        for obj in compiler.object_filenames(sources, output_dir=output_dir):
            compiler.mkpath(os.path.dirname(obj) or ".")
        if not getattr(compiler, "initialized", True):
            compiler.initialize()   # MSVC finds its tools once, not once per thread
        with concurrent.futures.ThreadPoolExecutor(min(jobs, len(sources))) as pool:
            parts = list(pool.map(lambda src: one_or_o2([src], *args, **kwargs), sources))
        return [obj for part in parts for obj in part]

    compiler.compile = compile


def build_jobs():
    """XENTC_BUILD_JOBS (a positive integer), else the CPUs this process may use."""
    value = os.environ.get("XENTC_BUILD_JOBS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise SystemExit(f"XENTC_BUILD_JOBS must be a positive integer, got {value!r}")
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # macOS, Windows
        return os.cpu_count() or 1


class BuildExt(build_ext):
    def build_extensions(self):
        compile_in_parallel(self.compiler, build_jobs())
        sanitize = sanitize_flags(os.environ.get("XENTC_SANITIZE", ""), self.compiler.compiler_type)
        if sanitize:
            print(f"xentc: sanitizer build ({' '.join(sanitize)}): for testing only")
        mode = os.environ.get("XENTC_OPENMP", "auto").strip().lower()
        if mode not in ("auto", "require", "off"):
            raise SystemExit(f"XENTC_OPENMP must be auto, require or off, got {mode!r}")
        cflags, ldflags = [], []
        if mode != "off":
            cflags, ldflags = openmp_flags(self.compiler)
            ok, reason = probe_openmp(self.compiler, cflags, ldflags)
            if ok:
                print(f"xentc: building with OpenMP ({reason})")
            elif mode == "require":
                raise SystemExit(f"xentc: XENTC_OPENMP=require but OpenMP is not usable: {reason}")
            else:
                print(f"xentc: WARNING: OpenMP not usable, building serial ({reason})",
                      file=sys.stderr)
                cflags, ldflags = [], []
        else:
            print("xentc: XENTC_OPENMP=off, building serial")
        # OPT: -O3 (GCC 12, C harness, one core, AVX2, against -O2 on the same
        # code: long rows' loss and loss+grad 8-15% faster in float32 and
        # float64, rows of 10 classes the same).  A file the compiler fails on at
        # -O3 (an earlier version of the 16-byte float64 path met an internal
        # compiler error in GCC 12) compiles at -O2 instead (compile_in_parallel).
        opt = ["/O2"] if self.compiler.compiler_type == "msvc" else ["-O3"]
        for ext in self.extensions:
            ext.extra_compile_args = opt + cflags + sanitize + ext.extra_compile_args
            ext.extra_link_args = ldflags + sanitize + ext.extra_link_args
        super().build_extensions()


extensions = [
    Extension(
        "xentc._kernels",
        sources=["xentc/_kernels.pyx", "xentc/_xentc_rows.c", "xentc/_xentc_rows_avx2.c",
                 "xentc/_xentc_rows_avx512.c"],
        include_dirs=["xentc"],
        depends=["xentc/_xentc_omp.h", "xentc/_xentc_rows.h", "xentc/_xentc_rows_tu.h", "xentc/_xentc_isa.h",
                 "xentc/_xentc_exp.h", "xentc/_xentc_prims.h", "xentc/_xentc_rows_impl.h"],
    ),
    Extension("xentc._elementwise", sources=["xentc/_elementwise.pyx"], include_dirs=["xentc"],
              depends=["xentc/_xentc_omp.h"]),
    Extension("xentc._buffers", sources=["xentc/_buffers.pyx"]),
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "nonecheck": False,
        },
    ),
    cmdclass={"build_ext": BuildExt},
)
