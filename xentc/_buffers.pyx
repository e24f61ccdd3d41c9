# Design
# ------
# The buffer cache: the memory of large results (gradients, softmax outputs) that
# the caller has dropped, kept for the next result instead of being handed back to
# the operating system.
#
# Why: a NumPy array of more than a few MiB gets fresh pages from the OS (glibc
# maps them with mmap and unmaps them on free), and the OS zeroes every page on
# its first write.  A training loop that asks for a gradient of the same shape at
# every step pays for that each time: on the 2-vCPU Xeon VM of bench/, a default
# float32 loss+grad call of 8192 x 32000 took 3-5x the bandwidth limit, one that
# writes into a buffer the caller reuses (grad_out) 2-3x.  PyTorch's CUDA caching
# allocator and jemalloc's retained pages answer the same cost the same way.
#
# How: a result of at least MIN_BYTES (and at most the capacity) is an ndarray
# over a Block, this file's buffer object, which is the array's base (every view
# of the result keeps it alive; Block has no __releasebuffer__, so NumPy keeps
# the Block itself as the base, not a memoryview of it that the caller could
# release).  When the last reference goes, the Block's memory goes into a small
# free list instead of back to the allocator, up to `max_bytes` in all (oldest
# entries evicted first); the next large result of a size that fits takes it.
# All of it runs with the GIL held and calls nothing that could release it, so
# Python threads see a consistent list.
#
# The memory starts on a 64-byte boundary or, given an array (empty's `like`: the
# labels of a dense loss+grad), as far past one as that array (within the element
# size; blocks have 64 bytes to spare for it): the kernels' vector steps are aligned
# for their streaming stores, and a gradient at another offset than the labels made
# the loads of each step cross cache lines (C harness from Python, float32 dense
# loss+grad of 2048 x 32000 on two Zen 4 cores, labels and logits 16 bytes past a
# boundary as NumPy's were: 35.3 ms into a gradient on the boundary, 27.6 into one
# at 16).  It is advised for transparent huge pages on Linux, as NumPy does.

from cpython.buffer cimport PyBUF_FORMAT, PyBUF_ND, PyBUF_STRIDES
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc
from libc.stdint cimport uintptr_t

cdef extern from "Python.h":
    Py_ssize_t PY_SSIZE_T_MAX

import math

import numpy as np

cdef extern from *:
    """
    #include <stdint.h>
    #if defined(__linux__)
    #include <sys/mman.h>
    #include <unistd.h>
    #endif
    static void xentc_advise_huge(char *p, Py_ssize_t n) {
    #if defined(__linux__) && defined(MADV_HUGEPAGE)
        /* the whole pages inside [p, p + n), as NumPy's hugepage hint does */
        long page = sysconf(_SC_PAGESIZE);
        uintptr_t mask = page > 0 ? (uintptr_t)page - 1 : 4095;
        uintptr_t a = ((uintptr_t)p + mask) & ~mask;
        uintptr_t e = ((uintptr_t)p + (uintptr_t)n) & ~mask;
        if (e > a)
            madvise((void *)a, e - a, MADV_HUGEPAGE);   /* a hint: errors are ignored */
    #else
        (void)p; (void)n;
    #endif
    }
    """
    void xentc_advise_huge(char *p, Py_ssize_t n) noexcept nogil

# Results smaller than this come from NumPy: glibc reuses such blocks itself (its
# mmap threshold rises to 32 MiB once a mapped block is freed), and tiny results
# are not worth a Block.
cdef Py_ssize_t MIN_BYTES = 1 << 22
cdef Py_ssize_t ALIGN = 64
cdef enum:
    MAX_ENTRIES = 8

# The free list: entries [0, n_free), oldest first (the allocator's pointer and the
# bytes usable at any offset from its first ALIGN boundary, see new_block).
cdef void *free_raw[MAX_ENTRIES]
cdef Py_ssize_t free_size[MAX_ENTRIES]
cdef int n_free = 0
cdef Py_ssize_t held_bytes = 0
cdef Py_ssize_t max_bytes = 1 << 30
cdef Py_ssize_t n_reused = 0       # results served from the list (tests, show_config)


cdef inline char *aligned(void *raw) noexcept:
    """The first ALIGN-byte boundary in a block from PyMem_RawMalloc(size + 2 * ALIGN)."""
    return <char *>((<uintptr_t>raw + ALIGN - 1) & ~<uintptr_t>(ALIGN - 1))


cdef void drop_entry(int i) noexcept:
    """Remove entry i of the free list (keeping the order); the caller owns its memory."""
    global n_free, held_bytes
    cdef int j
    held_bytes -= free_size[i]
    for j in range(i, n_free - 1):
        free_raw[j] = free_raw[j + 1]
        free_size[j] = free_size[j + 1]
    n_free -= 1


cdef void free_oldest() noexcept:
    PyMem_RawFree(free_raw[0])
    drop_entry(0)


cdef void give_back(void *raw, Py_ssize_t size) noexcept:
    """A Block's memory, no longer referenced: keep it (evicting the oldest) or free it."""
    global n_free, held_bytes
    if size > max_bytes:
        PyMem_RawFree(raw)
        return
    while n_free and (n_free == MAX_ENTRIES or size > max_bytes - held_bytes):
        free_oldest()
    free_raw[n_free] = raw
    free_size[n_free] = size
    n_free += 1
    held_bytes += size


cdef class Block:
    """Memory for one large result; its buffer is `nbytes` writable bytes."""
    cdef void *raw
    cdef char *data
    cdef Py_ssize_t size          # bytes usable at any offset (at least nbytes)
    cdef Py_ssize_t nbytes        # bytes exposed by the buffer
    cdef Py_ssize_t one
    cdef readonly bint reused     # the memory was a dropped result's (its pages are mapped)

    def __dealloc__(self):
        if self.raw != NULL:
            give_back(self.raw, self.size)
            self.raw = NULL

    # No __releasebuffer__: with one, NumPy would make a memoryview of the Block
    # the array's base, which the caller could release() while the array lives.
    def __getbuffer__(self, Py_buffer *buf, int flags):
        if self.data == NULL:
            raise BufferError("an empty xentc buffer block")
        buf.buf = self.data
        buf.obj = self
        buf.len = self.nbytes
        buf.readonly = 0
        buf.itemsize = 1
        buf.format = NULL
        if flags & PyBUF_FORMAT:
            buf.format = b"B"
        buf.ndim = 1
        buf.shape = &self.nbytes if (flags & PyBUF_ND) == PyBUF_ND else NULL
        buf.strides = &self.one if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL
        buf.suboffsets = NULL
        buf.internal = NULL


cdef Block new_block(Py_ssize_t nbytes, Py_ssize_t offset):
    """A Block of nbytes starting `offset` (0 to ALIGN - 1) bytes past an ALIGN
    boundary: the best-fitting dropped result (at most twice the size), else new
    memory.  A block's size is the bytes it holds at any such offset (it has
    ALIGN bytes to spare past them)."""
    global n_reused
    cdef Block b = Block.__new__(Block)
    cdef int i, best = -1
    cdef void *raw
    for i in range(n_free):
        if (nbytes <= free_size[i] and free_size[i] - nbytes <= nbytes
                and (best < 0 or free_size[i] < free_size[best])):
            best = i
    if best >= 0:
        b.raw, b.size = free_raw[best], free_size[best]
        drop_entry(best)
        b.reused = True
        n_reused += 1
    else:
        raw = NULL if nbytes > PY_SSIZE_T_MAX - 2 * ALIGN else PyMem_RawMalloc(nbytes + 2 * ALIGN)
        if raw == NULL:
            raise MemoryError(f"xentc could not allocate {nbytes} bytes for a result")
        b.raw = raw
        b.size = nbytes
        xentc_advise_huge(aligned(raw), nbytes + ALIGN)
    b.data = aligned(b.raw) + offset
    b.nbytes = nbytes
    b.one = 1
    return b


def empty(shape, dtype, like=None):
    """An uninitialised C-contiguous array, from the buffer cache when it is large enough;
    with `like` (an array), as far past a 64-byte boundary as like's data (rounded down
    to a multiple of the item size)."""
    dtype = np.dtype(dtype)
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    if nbytes < MIN_BYTES or nbytes > max_bytes:
        return np.empty(shape, dtype)   # never cached: NumPy's own array
    offset = 0
    if like is not None:
        offset = like.__array_interface__["data"][0] % ALIGN
        offset -= offset % dtype.itemsize
    return np.frombuffer(new_block(nbytes, offset), dtype, count).reshape(shape)


def block_of(arr):
    """The Block under arr (the end of its chain of bases), or None."""
    base = arr.base
    while isinstance(base, np.ndarray):
        base = base.base
    return base if isinstance(base, Block) else None


def reused(arr):
    """Whether arr's memory came from the cache with its pages already mapped."""
    block = block_of(arr)
    return block is not None and block.reused


def set_max_bytes(Py_ssize_t value):
    """Set the cache's capacity (freeing what no longer fits); return the previous one."""
    global max_bytes
    cdef Py_ssize_t old = max_bytes
    max_bytes = value
    while n_free and held_bytes > max_bytes:
        free_oldest()
    return old


def clear():
    """Free every dropped result the cache holds; return the bytes freed."""
    cdef Py_ssize_t freed = held_bytes
    while n_free:
        free_oldest()
    return freed


def info():
    """(max_bytes, held_bytes, held_blocks, reused_results)."""
    return max_bytes, held_bytes, n_free, n_reused


def min_bytes():
    """The size from which results come from the cache."""
    return MIN_BYTES
