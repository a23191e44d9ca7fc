// oneDNN v2.x C API (Debian libdnnl-dev), plus a parallel-for on OpenMP's thread pool.
#include <oneapi/dnnl/dnnl.h>
#include <dlfcn.h>

// The Swift kernels run their parallel loops on the same OpenMP threads oneDNN uses. With a second pool
// (Dispatch), OpenMP's workers keep spinning after each oneDNN call and compete with it for the cores.
// GOMP_parallel is looked up at run time (libdnnl already loaded libgomp), so nothing extra is linked.
typedef void (*sd_task_fn)(void *context, long index);

typedef struct {
    sd_task_fn fn;
    void *context;
    long count;
    long next;
} sd_parallel_job;

static void sd_parallel_worker(void *data) {
    sd_parallel_job *job = (sd_parallel_job *)data;
    for (;;) {
        long i = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        if (i >= job->count) break;
        job->fn(job->context, i);
    }
}

typedef void (*sd_gomp_parallel_fn)(void (*)(void *), void *, unsigned, unsigned);

/// Runs fn(context, i) for every i in [0, count) on OpenMP's pool, dynamically scheduled. Returns -1
/// (having run nothing) when libgomp is not loaded, so the caller can fall back.
static inline int sd_parallel_for(long count, sd_task_fn fn, void *context) {
    static sd_gomp_parallel_fn gomp = 0;
    static int looked = 0;
    if (!__atomic_load_n(&looked, __ATOMIC_ACQUIRE)) {
        gomp = (sd_gomp_parallel_fn)dlsym(RTLD_DEFAULT, "GOMP_parallel");
        __atomic_store_n(&looked, 1, __ATOMIC_RELEASE);
    }
    if (!gomp) return -1;
    sd_parallel_job job = { fn, context, count, 0 };
    gomp(sd_parallel_worker, &job, 0, 0);
    return 0;
}

#include <malloc.h>

/// Keeps freed buffers of up to 32 MiB (glibc's maximum) in malloc's heap instead of unmapping them, so
/// the engine's short-lived activation tensors reuse warm pages rather than faulting fresh ones in.
static inline void sd_tune_malloc(void) {
    mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 512 * 1024 * 1024);
}
