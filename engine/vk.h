/*
 * vk.h - internal: the engine's Vulkan device, buffers and command recording.
 *
 * Not part of the public contract (engine/engine.h); used by the engine's own files, by
 * tests/engine and by bench/. Every function returns 0 or a negative CWT_E* code.
 */
#ifndef CWT_ENGINE_VK_H
#define CWT_ENGINE_VK_H

#include <stdint.h>
#include <vulkan/vulkan.h>

#include "engine/engine.h"
#include "shaders/cwt_spv.h"

#define ENG_BINDINGS        8   /* storage buffers per dispatch (set 0, bindings 0..7) */
#define ENG_TEX_BINDINGS    4   /* uniform texel buffers, set 0, bindings 8..11 */
#define ENG_PUSH_BYTES      128 /* push constant block size, the Vulkan minimum guarantee */
#define ENG_ALIGN           256 /* sub-allocation alignment (>= minStorageBufferOffsetAlignment) */
#define ENG_SETS_PER_POOL   256
#define ENG_MAX_POOLS       64
#define ENG_PROFILE_QUERIES 2048 /* timestamps per recording when profiling */
/* llvmpipe (lavapipe) ends all loops of a shader invocation, silently, once that invocation has
 * run 65535 loop iterations in all (gallivm's LP_MAX_TGSI_LOOP_ITERATIONS, one counter shared by
 * every loop of the shader; each entry into a loop counts one more). Dispatches of the CPU
 * kernels keep every invocation's loops under this bound (ops.c). */
#define ENG_CPU_LOOP_MAX 65000u

/* GEMM kernel shapes (see shaders/gemm.comp): the values of the gemm family's shape dimension
 * (shaders/CMakeLists.txt), so that a device's shape indexes cwt_spv_gemm() directly. */
enum eng_gemm_shape {
    ENG_GEMM_REG = CWT_GEMM_SHAPE_REG,
    ENG_GEMM_SG = CWT_GEMM_SHAPE_SG,
    ENG_GEMM_TILE = CWT_GEMM_SHAPE_TILE
};

/* A device of either backend (backend.h): be says which. The Vulkan handles and settings below
 * are the Vulkan backend's (zero on the CPU backend); cpu holds the CPU backend's state. */
struct eng_device {
    const struct eng_backend *be;
    struct cpu_device *cpu;
    VkInstance instance;
    VkDebugUtilsMessengerEXT messenger; /* VK_NULL_HANDLE without validation */
    VkPhysicalDevice phys;
    VkDevice dev;
    VkQueue queue;
    uint32_t queue_family;
    VkCommandPool cmd_pool;
    VkPipelineCache cache;
    VkDescriptorSetLayout set_layout;
    VkPipelineLayout pipe_layout;
    VkPipeline pipes[CWT_SPV_COUNT]; /* created on first use */
    VkPhysicalDeviceMemoryProperties mem_props;
    VkDeviceSize min_ssbo_align;
    uint32_t max_texel_elements; /* maxTexelBufferElements */
    struct eng_device_info info;
    int is_cpu;
    enum eng_gemm_shape gemm_shape; /* kernel shape of the implicit-GEMM (gemm.comp) kernels */
    int cpu_kernels;          /* 1 (CPU devices; CWT_ENG_CPU_GEMM overrides): the kernel variants
                                 made for llvmpipe: dense GEMMs in gemm_cpu.comp, convolutions as
                                 explicit im2col/col2im + gemm_cpu, texel-buffer pooling and
                                 transposes, serial reductions. 0: the GPU variants (gemm.comp,
                                 workgroup-wide reductions). */
    int cpu_conv_gather;      /* with cpu_kernels: convolutions whose shape allows it gather
                                 their input in the GEMM (gemm_cpu.comp GEMM_IMPL) instead of
                                 an im2col pass, as texel windows (CONV_WIN) where the shape
                                 allows; 2: gathers without windows; 0: always
                                 im2col (2, 0: tests, CWT_ENG_CONV_GATHER=0|1|2) */
    int cpu_dw_shift;         /* with cpu_kernels: filter gradients of stride-1 convolutions
                                 from shifted input frames or straight from x (gemm_cpu.comp
                                 GEMM_DW, DW_X) instead of im2col: 1 where estimated faster,
                                 2 always from frames, 3 always from x where the shape allows
                                 it, else frames (2, 3: tests), 0 never
                                 (CWT_ENG_DW_SHIFT=0|1|2|3) */
    int cpu_dw_lanes;         /* with cpu_kernels: filter gradients of 3x3 convolutions
                                 whose shape allows it with the lanes along the pixels
                                 (gemm_cpu.comp GEMM_DWL); 0: as cpu_dw_shift says (tests,
                                 CWT_ENG_DW_LANES=0) */
    uint32_t validation_msgs; /* incremented by the debug messenger callback */
    int validation;
    VkBuffer dummy; /* bound to unused binding slots */
    VkDeviceMemory dummy_mem;
    /* CWT_ENG_PROFILE=1: per-kernel device time from timestamp queries, summed by
     * eng_rec_profile_collect() and printed to stderr by eng_device_close(); 2: also one line
     * per dispatch of every run (kernel, time, workgroups, first push constants) */
    int profile;
    double ts_period_ns;
    double prof_ns[CWT_SPV_COUNT + 1]; /* [CWT_SPV_COUNT]: buffer copies */
    uint64_t prof_calls[CWT_SPV_COUNT + 1];
};

/* A buffer with its own memory. map is non-NULL when the memory is host-visible (always for
 * staging buffers; also for device buffers on unified-memory devices such as lavapipe). */
struct eng_buf {
    VkBuffer buf;
    VkDeviceMemory mem;
    VkDeviceSize size;
    void *map;
};

/* A range of a buffer: what one shader binding sees. */
struct eng_tref {
    VkBuffer buf;
    VkDeviceSize off;   /* bytes, multiple of ENG_ALIGN */
    VkDeviceSize bytes; /* 0 = unused binding */
};

enum eng_mem { ENG_MEM_DEVICE = 0, ENG_MEM_HOST };

/* Creates a buffer of size bytes, rounded up to 16 (storage, uniform texel, transfer src/dst).
 * ENG_MEM_HOST: host-visible, coherent, mapped. ENG_MEM_DEVICE: device-local, mapped too when it is
 * host-visible. Release with eng_buf_free(). */
int eng_buf_create(struct eng_device *d, VkDeviceSize size, enum eng_mem kind, struct eng_buf *out,
                   char *err, size_t errlen);
void eng_buf_free(struct eng_device *d, struct eng_buf *b);

/* Returns the pipeline for a shader variant, creating it (and compiling it) on first use. */
int eng_pipeline(struct eng_device *d, enum cwt_spv_id id, VkPipeline *out, char *err,
                 size_t errlen);

/* A command buffer being recorded, with the descriptor pools its dispatches use. */
struct eng_rec {
    struct eng_device *d;
    VkCommandBuffer cb;
    VkDescriptorPool pools[ENG_MAX_POOLS];
    uint32_t npools;
    uint32_t sets_left;  /* in pools[npools - 1] */
    struct eng_tref col; /* im2col scratch for the CPU convolution path; bytes 0 = none (the
                            convolutions then use the implicit kernels). Set by the caller. */
    VkBufferView *views; /* texel buffer views of this recording (destroyed with it) */
    uint32_t nviews, cap_views;
    int failed; /* first error of a dispatch; eng_rec_end returns it */
    char err[CWT_ERRLEN];
    VkQueryPool qpool; /* profiling only: a timestamp before and after each dispatch */
    int *qid;          /* kernel of command i (timestamps i and i + 1); CWT_SPV_COUNT: copy */
    uint32_t nq;
    uint32_t (*qinfo)[6]; /* CWT_ENG_PROFILE=2: groups and first three push constants of
                             command i, printed per dispatch */
};

/* Allocates the command buffer. Release with eng_rec_free(). */
int eng_rec_init(struct eng_device *d, struct eng_rec *r, char *err, size_t errlen);
void eng_rec_free(struct eng_rec *r);
/* Resets (dropping earlier descriptor sets) and begins recording. */
int eng_rec_begin(struct eng_rec *r, char *err, size_t errlen);
/* Ends recording; returns the first error of a dispatch recorded since eng_rec_begin. */
int eng_rec_end(struct eng_rec *r, char *err, size_t errlen);
/* Records one dispatch of variant id with up to ENG_BINDINGS buffer ranges (unused slots:
 * bytes == 0), push constants (<= ENG_PUSH_BYTES) and a compute->compute barrier after it.
 * Errors are remembered in r and reported by eng_rec_end. */
void eng_rec_dispatch(struct eng_rec *r, enum cwt_spv_id id, const struct eng_tref *bufs,
                      uint32_t nbufs, const void *push, uint32_t push_size, uint32_t gx,
                      uint32_t gy, uint32_t gz);
/* Same, with ntex (<= ENG_TEX_BINDINGS) ranges bound as uniform texel buffers at bindings 8..
 * (read with texelFetch: on llvmpipe a vectorised gather, where a storage-buffer load in a loop
 * is a scalar loop over the lanes). Bit i of vec4_mask makes view i rgba32f instead of r32f;
 * its range is rounded up to 16 bytes (eng_buf_create sizes allow that). */
void eng_rec_dispatch_tex(struct eng_rec *r, enum cwt_spv_id id, const struct eng_tref *bufs,
                          uint32_t nbufs, const struct eng_tref *tex, uint32_t ntex,
                          uint32_t vec4_mask, const void *push, uint32_t push_size, uint32_t gx,
                          uint32_t gy, uint32_t gz);
/* Records a buffer copy followed by a transfer->compute barrier. */
void eng_rec_copy(struct eng_rec *r, VkBuffer src, VkDeviceSize src_off, VkBuffer dst,
                  VkDeviceSize dst_off, VkDeviceSize bytes);

/* Submits cb signalling fence (reset first); eng_wait waits for it. */
int eng_submit(struct eng_device *d, VkCommandBuffer cb, VkFence fence);
int eng_wait(struct eng_device *d, VkFence fence);
int eng_fence_create(struct eng_device *d, VkFence *out);

/* When profiling (eng_device.profile), adds the device time of each dispatch of r's last
 * completed submission to the device's per-kernel totals. Call after waiting for it. */
void eng_rec_profile_collect(struct eng_rec *r);

/* Records, submits and waits for a finished recording: for tests and one-off work. */
int eng_rec_run(struct eng_rec *r, char *err, size_t errlen);

/* Rounds up to ENG_ALIGN. */
static inline VkDeviceSize eng_align(VkDeviceSize x)
{
    return (x + ENG_ALIGN - 1) / ENG_ALIGN * ENG_ALIGN;
}

#endif
