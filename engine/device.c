/*
 * device.c - Vulkan instance, physical device choice, logical device, pipelines, buffers and
 * command recording for the training engine.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cwt.h"
#include "engine/model.h"
#include "engine/vk.h"

#define VKCHECK(call, what)                                                                        \
    do {                                                                                           \
        VkResult vr_ = (call);                                                                     \
        if (vr_ != VK_SUCCESS)                                                                     \
            return cwt_seterr(err, errlen, CWT_EVULKAN, "%s failed (VkResult %d)", what,           \
                              (int)vr_);                                                           \
    } while (0)

static const char *VALIDATION_LAYER = "VK_LAYER_KHRONOS_validation";

/* Counts every message of warning or error severity; the count is what tests assert on.
 * The message is printed too, so a failing test shows what the layer said. */
static VKAPI_ATTR VkBool32 VKAPI_CALL debug_cb(VkDebugUtilsMessageSeverityFlagBitsEXT sev,
                                               VkDebugUtilsMessageTypeFlagsEXT types,
                                               const VkDebugUtilsMessengerCallbackDataEXT *data,
                                               void *user)
{
    (void)types;
    struct eng_device *d = user;
    if (sev >= VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT) {
        d->validation_msgs++;
        fprintf(stderr, "vulkan validation: %s\n", data && data->pMessage ? data->pMessage : "?");
    }
    return VK_FALSE;
}

static const char *type_name(VkPhysicalDeviceType t)
{
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU:
        return "discrete";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
        return "integrated";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU:
        return "virtual";
    case VK_PHYSICAL_DEVICE_TYPE_CPU:
        return "cpu";
    default:
        return "other";
    }
}

/* Higher is better for "auto": discrete > integrated > virtual > CPU > other. */
static int type_rank(VkPhysicalDeviceType t)
{
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU:
        return 4;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
        return 3;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU:
        return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU:
        return 1;
    default:
        return 0;
    }
}

static int compute_family(VkPhysicalDevice pd, uint32_t *fam)
{
    uint32_t n = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, NULL);
    if (n == 0 || n > 64)
        return -1;
    VkQueueFamilyProperties props[64];
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, props);
    /* Prefer a compute-only family (async compute on GPUs), else any with compute. */
    for (uint32_t i = 0; i < n; i++)
        if ((props[i].queueFlags & VK_QUEUE_COMPUTE_BIT) &&
            !(props[i].queueFlags & VK_QUEUE_GRAPHICS_BIT)) {
            *fam = i;
            return 0;
        }
    for (uint32_t i = 0; i < n; i++)
        if (props[i].queueFlags & VK_QUEUE_COMPUTE_BIT) {
            *fam = i;
            return 0;
        }
    return -1;
}

static int has_layer(const char *name)
{
    uint32_t n = 0;
    if (vkEnumerateInstanceLayerProperties(&n, NULL) != VK_SUCCESS || n == 0)
        return 0;
    VkLayerProperties *p = calloc(n, sizeof(*p));
    if (!p)
        return 0;
    int found = 0;
    if (vkEnumerateInstanceLayerProperties(&n, p) == VK_SUCCESS)
        for (uint32_t i = 0; i < n; i++)
            if (strcmp(p[i].layerName, name) == 0)
                found = 1;
    free(p);
    return found;
}

static int create_instance(struct eng_device *d, int validation, char *err, size_t errlen)
{
    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "cwt",
        .applicationVersion = 1,
        .pEngineName = "cwt-engine",
        .engineVersion = 1,
        .apiVersion = VK_API_VERSION_1_1,
    };
    const char *layers[1] = {VALIDATION_LAYER};
    const char *exts[1] = {VK_EXT_DEBUG_UTILS_EXTENSION_NAME};
    VkDebugUtilsMessengerCreateInfoEXT dbg = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                           VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
        .pfnUserCallback = debug_cb,
        .pUserData = d,
    };
    VkInstanceCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .pApplicationInfo = &app,
    };
    if (validation) {
        if (!has_layer(VALIDATION_LAYER))
            return cwt_seterr(err, errlen, CWT_EVULKAN,
                              "validation requested but %s is not installed", VALIDATION_LAYER);
        ci.enabledLayerCount = 1;
        ci.ppEnabledLayerNames = layers;
        ci.enabledExtensionCount = 1;
        ci.ppEnabledExtensionNames = exts;
        ci.pNext = &dbg; /* also catches messages from instance creation and destruction */
    }
    VKCHECK(vkCreateInstance(&ci, NULL, &d->instance), "vkCreateInstance");
    if (validation) {
        PFN_vkCreateDebugUtilsMessengerEXT fn =
            (PFN_vkCreateDebugUtilsMessengerEXT)vkGetInstanceProcAddr(
                d->instance, "vkCreateDebugUtilsMessengerEXT");
        if (!fn)
            return cwt_seterr(err, errlen, CWT_EVULKAN, "vkCreateDebugUtilsMessengerEXT missing");
        VKCHECK(fn(d->instance, &dbg, NULL, &d->messenger), "vkCreateDebugUtilsMessengerEXT");
    }
    return 0;
}

/* Picks a physical device: the best of any type, the best GPU, or by index or name substring. */
static int pick_device(struct eng_device *d, const char *choice, enum eng_vk_pick pick, char *err,
                       size_t errlen)
{
    uint32_t n = 0;
    VKCHECK(vkEnumeratePhysicalDevices(d->instance, &n, NULL), "vkEnumeratePhysicalDevices");
    if (n == 0)
        return cwt_seterr(err, errlen, CWT_ENOENT,
                          "no Vulkan device found (install mesa-vulkan-drivers for lavapipe)");
    if (n > 64)
        n = 64;
    VkPhysicalDevice pds[64];
    VkResult vr = vkEnumeratePhysicalDevices(d->instance, &n, pds);
    if (vr != VK_SUCCESS && vr != VK_INCOMPLETE)
        return cwt_seterr(err, errlen, CWT_EVULKAN, "vkEnumeratePhysicalDevices failed (%d)",
                          (int)vr);
    int best = -1, best_rank = -1;
    int is_auto = pick != ENG_VK_NAMED;
    int64_t idx = -1;
    if (!is_auto && cwt_parse_i64(choice, 0, 63, &idx) != 0)
        idx = -1;
    for (uint32_t i = 0; i < n; i++) {
        VkPhysicalDeviceProperties pr;
        vkGetPhysicalDeviceProperties(pds[i], &pr);
        uint32_t fam;
        int usable = pr.apiVersion >= VK_API_VERSION_1_1 && compute_family(pds[i], &fam) == 0;
        if (!usable)
            continue;
        if (is_auto) {
            if (pick == ENG_VK_GPU && type_rank(pr.deviceType) < 3)
                continue; /* not a GPU */
            if (type_rank(pr.deviceType) > best_rank) {
                best_rank = type_rank(pr.deviceType);
                best = (int)i;
            }
        } else if (idx >= 0) {
            if ((int64_t)i == idx)
                best = (int)i;
        } else if (strstr(pr.deviceName, choice) != NULL && best < 0) {
            best = (int)i;
        }
    }
    if (best < 0)
        return cwt_seterr(err, errlen, CWT_ENOENT,
                          "no usable Vulkan 1.1 compute device matches \"%s\" (%u devices)",
                          pick == ENG_VK_GPU ? "gpu"
                          : is_auto          ? "vulkan"
                                             : choice,
                          n);
    d->phys = pds[best];
    d->info.index = (uint32_t)best;
    return 0;
}

static void query_info(struct eng_device *d)
{
    VkPhysicalDeviceSubgroupProperties sg = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceDriverProperties drv = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES, .pNext = &sg};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
    VkPhysicalDeviceProperties base;
    vkGetPhysicalDeviceProperties(d->phys, &base);
    /* VkPhysicalDeviceDriverProperties is core in 1.2; chain it only when available. */
    p2.pNext = base.apiVersion >= VK_API_VERSION_1_2 ? (void *)&drv : (void *)&sg;
    vkGetPhysicalDeviceProperties2(d->phys, &p2);
    const VkPhysicalDeviceProperties *pr = &p2.properties;
    struct eng_device_info *in = &d->info;
    snprintf(in->name, sizeof(in->name), "%s", pr->deviceName);
    if (base.apiVersion >= VK_API_VERSION_1_2)
        snprintf(in->driver, sizeof(in->driver), "%s / %s", drv.driverName, drv.driverInfo);
    else
        snprintf(in->driver, sizeof(in->driver), "driver version 0x%x", pr->driverVersion);
    snprintf(in->type, sizeof(in->type), "%s", type_name(pr->deviceType));
    in->api_version = pr->apiVersion;
    in->subgroup_size = sg.subgroupSize;
    in->max_shared_memory = pr->limits.maxComputeSharedMemorySize;
    in->max_workgroup_invocations = pr->limits.maxComputeWorkGroupInvocations;
    in->max_storage_buffer_range = pr->limits.maxStorageBufferRange;
    d->max_texel_elements = pr->limits.maxTexelBufferElements;
    d->min_ssbo_align = pr->limits.minStorageBufferOffsetAlignment;
    d->is_cpu = pr->deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
    const char *prof = getenv("CWT_ENG_PROFILE");
    d->profile = prof && (strcmp(prof, "1") == 0 || strcmp(prof, "2") == 0) &&
                         pr->limits.timestampComputeAndGraphics
                     ? prof[0] - '0'
                     : 0;
    d->ts_period_ns = pr->limits.timestampPeriod;
    vkGetPhysicalDeviceMemoryProperties(d->phys, &d->mem_props);

    /* GEMM kernel shape: register blocks on CPU devices (barriers switch coroutines there,
     * DESIGN section 6); with subgroups of exactly 8 the rows of A are shared by broadcast.
     * Real GPUs get shared-memory tiles. CWT_ENG_GEMM=reg|sg|tile overrides (tests, bench). */
    int sg_ok = sg.subgroupSize == 8 && (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                (sg.supportedOperations & VK_SUBGROUP_FEATURE_BALLOT_BIT);
    if (d->is_cpu)
        d->gemm_shape = sg_ok ? ENG_GEMM_SG : ENG_GEMM_REG;
    else
        d->gemm_shape = in->max_workgroup_invocations >= 256 ? ENG_GEMM_TILE : ENG_GEMM_REG;
    const char *ov = getenv("CWT_ENG_GEMM");
    if (ov && strcmp(ov, "reg") == 0)
        d->gemm_shape = ENG_GEMM_REG;
    else if (ov && strcmp(ov, "sg") == 0 && sg_ok)
        d->gemm_shape = ENG_GEMM_SG;
    else if (ov && strcmp(ov, "tile") == 0 && in->max_workgroup_invocations >= 256)
        d->gemm_shape = ENG_GEMM_TILE;
    /* CPU devices: explicit im2col + the workgroup-uniform GEMM (shaders/gemm_cpu.comp), several
     * times faster there than the implicit kernels. CWT_ENG_CPU_GEMM=0|1 overrides. */
    d->cpu_kernels = d->is_cpu;
    const char *cg = getenv("CWT_ENG_CPU_GEMM");
    if (cg && (strcmp(cg, "0") == 0 || strcmp(cg, "1") == 0))
        d->cpu_kernels = cg[0] == '1';
    const char *gat = getenv("CWT_ENG_CONV_GATHER");
    d->cpu_conv_gather = gat && gat[0] >= '0' && gat[0] <= '2' && gat[1] == '\0' ? gat[0] - '0' : 1;
    const char *dwl = getenv("CWT_ENG_DW_LANES");
    d->cpu_dw_lanes = !(dwl && strcmp(dwl, "0") == 0);
    const char *dws = getenv("CWT_ENG_DW_SHIFT");
    d->cpu_dw_shift = dws && dws[0] >= '0' && dws[0] <= '3' && dws[1] == '\0' ? dws[0] - '0' : 1;
}

static int create_logical(struct eng_device *d, char *err, size_t errlen)
{
    if (compute_family(d->phys, &d->queue_family) != 0)
        return cwt_seterr(err, errlen, CWT_EVULKAN, "device has no compute queue");
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
        .queueFamilyIndex = d->queue_family,
        .queueCount = 1,
        .pQueuePriorities = &prio,
    };
    VkDeviceCreateInfo dci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .queueCreateInfoCount = 1,
        .pQueueCreateInfos = &qci,
    };
    VKCHECK(vkCreateDevice(d->phys, &dci, NULL, &d->dev), "vkCreateDevice");
    vkGetDeviceQueue(d->dev, d->queue_family, 0, &d->queue);

    VkCommandPoolCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
        .queueFamilyIndex = d->queue_family,
    };
    VKCHECK(vkCreateCommandPool(d->dev, &pci, NULL, &d->cmd_pool), "vkCreateCommandPool");
    VkPipelineCacheCreateInfo cci = {.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO};
    VKCHECK(vkCreatePipelineCache(d->dev, &cci, NULL, &d->cache), "vkCreatePipelineCache");

    VkDescriptorSetLayoutBinding b[ENG_BINDINGS + ENG_TEX_BINDINGS];
    for (uint32_t i = 0; i < ENG_BINDINGS + ENG_TEX_BINDINGS; i++)
        b[i] = (VkDescriptorSetLayoutBinding){
            .binding = i,
            .descriptorType = i < ENG_BINDINGS ? VK_DESCRIPTOR_TYPE_STORAGE_BUFFER
                                               : VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER,
            .descriptorCount = 1,
            .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        };
    VkDescriptorSetLayoutCreateInfo lci = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
        .bindingCount = ENG_BINDINGS + ENG_TEX_BINDINGS,
        .pBindings = b,
    };
    VKCHECK(vkCreateDescriptorSetLayout(d->dev, &lci, NULL, &d->set_layout),
            "vkCreateDescriptorSetLayout");
    VkPushConstantRange pcr = {
        .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .offset = 0, .size = ENG_PUSH_BYTES};
    VkPipelineLayoutCreateInfo plci = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
        .setLayoutCount = 1,
        .pSetLayouts = &d->set_layout,
        .pushConstantRangeCount = 1,
        .pPushConstantRanges = &pcr,
    };
    VKCHECK(vkCreatePipelineLayout(d->dev, &plci, NULL, &d->pipe_layout), "vkCreatePipelineLayout");
    return 0;
}

int vk_device_open(const char *choice, enum eng_vk_pick pick, int validation,
                   struct eng_device **out, char *err, size_t errlen)
{
    *out = NULL;
    struct eng_device *d = calloc(1, sizeof(*d));
    if (!d)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory opening the Vulkan device");
    d->be = &eng_backend_vulkan;
    d->validation = validation != 0;
    int rc = create_instance(d, d->validation, err, errlen);
    if (rc == 0)
        rc = pick_device(d, choice, pick, err, errlen);
    if (rc == 0) {
        query_info(d);
        rc = create_logical(d, err, errlen);
    }
    if (rc == 0) {
        struct eng_buf dummy;
        rc = eng_buf_create(d, 256, ENG_MEM_DEVICE, &dummy, err, errlen);
        if (rc == 0) {
            d->dummy = dummy.buf;
            d->dummy_mem = dummy.mem;
        }
    }
    if (rc != 0) {
        vk_device_close(d);
        free(d);
        return rc;
    }
    snprintf(d->info.backend, sizeof(d->info.backend), "vulkan");
    *out = d;
    return 0;
}

/* CWT_ENG_PROFILE=1: the per-kernel totals, largest first, on stderr. */
static void print_profile(const struct eng_device *d)
{
    double total = 0;
    int order[CWT_SPV_COUNT + 1], n = 0;
    for (int i = 0; i <= CWT_SPV_COUNT; i++)
        if (d->prof_calls[i]) {
            total += d->prof_ns[i];
            order[n++] = i;
        }
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && d->prof_ns[order[j]] > d->prof_ns[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    fprintf(stderr, "profile: %-22s %9s %11s %11s %6s\n", "kernel", "calls", "total ms", "us/call",
            "share");
    for (int k = 0; k < n; k++) {
        int i = order[k];
        fprintf(stderr, "profile: %-22s %9llu %11.1f %11.1f %5.1f%%\n",
                i == CWT_SPV_COUNT ? "(buffer copy)" : cwt_spv_table[i].name,
                (unsigned long long)d->prof_calls[i], d->prof_ns[i] / 1e6,
                d->prof_ns[i] / 1e3 / (double)d->prof_calls[i],
                total > 0 ? 100.0 * d->prof_ns[i] / total : 0.0);
    }
    fprintf(stderr, "profile: total %.1f ms of device time\n", total / 1e6);
}

void vk_device_close(struct eng_device *d)
{
    if (d->profile)
        print_profile(d);
    if (d->dev) {
        vkDeviceWaitIdle(d->dev);
        for (int i = 0; i < CWT_SPV_COUNT; i++)
            if (d->pipes[i])
                vkDestroyPipeline(d->dev, d->pipes[i], NULL);
        if (d->dummy)
            vkDestroyBuffer(d->dev, d->dummy, NULL);
        if (d->dummy_mem)
            vkFreeMemory(d->dev, d->dummy_mem, NULL);
        if (d->pipe_layout)
            vkDestroyPipelineLayout(d->dev, d->pipe_layout, NULL);
        if (d->set_layout)
            vkDestroyDescriptorSetLayout(d->dev, d->set_layout, NULL);
        if (d->cache)
            vkDestroyPipelineCache(d->dev, d->cache, NULL);
        if (d->cmd_pool)
            vkDestroyCommandPool(d->dev, d->cmd_pool, NULL);
        vkDestroyDevice(d->dev, NULL);
    }
    if (d->messenger) {
        PFN_vkDestroyDebugUtilsMessengerEXT fn =
            (PFN_vkDestroyDebugUtilsMessengerEXT)vkGetInstanceProcAddr(
                d->instance, "vkDestroyDebugUtilsMessengerEXT");
        if (fn)
            fn(d->instance, d->messenger, NULL);
    }
    if (d->instance)
        vkDestroyInstance(d->instance, NULL);
}

/* ------------------------------------------------------------------ buffers */

static int find_memory(const struct eng_device *d, uint32_t type_bits, VkMemoryPropertyFlags want,
                       uint32_t *out)
{
    for (uint32_t i = 0; i < d->mem_props.memoryTypeCount; i++)
        if ((type_bits & (1u << i)) && (d->mem_props.memoryTypes[i].propertyFlags & want) == want) {
            *out = i;
            return 0;
        }
    return -1;
}

int eng_buf_create(struct eng_device *d, VkDeviceSize size, enum eng_mem kind, struct eng_buf *out,
                   char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (size == 0)
        size = ENG_ALIGN;
    size = (size + 15) / 16 * 16; /* whole rgba32f texels for texel views */
    VkBufferCreateInfo bci = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = size,
        .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_UNIFORM_TEXEL_BUFFER_BIT |
                 VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
        .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
    };
    VKCHECK(vkCreateBuffer(d->dev, &bci, NULL, &out->buf), "vkCreateBuffer");
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(d->dev, out->buf, &req);
    const VkMemoryPropertyFlags hv =
        VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    uint32_t type = 0;
    int found;
    if (kind == ENG_MEM_HOST) {
        /* Cached host memory reads back faster; fall back to any coherent type. */
        found = find_memory(d, req.memoryTypeBits, hv | VK_MEMORY_PROPERTY_HOST_CACHED_BIT,
                            &type) == 0 ||
                find_memory(d, req.memoryTypeBits, hv, &type) == 0;
    } else {
        /* Unified memory (lavapipe, integrated GPUs): device-local and host-visible at once,
         * so uploads need no staging copy. */
        found =
            find_memory(d, req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT | hv, &type) ==
                0 ||
            find_memory(d, req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, &type) == 0 ||
            find_memory(d, req.memoryTypeBits, 0, &type) == 0;
    }
    if (!found) {
        eng_buf_free(d, out);
        return cwt_seterr(err, errlen, CWT_EVULKAN, "no suitable memory type for a buffer");
    }
    VkMemoryAllocateInfo mai = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
        .allocationSize = req.size,
        .memoryTypeIndex = type,
    };
    VkResult vr = vkAllocateMemory(d->dev, &mai, NULL, &out->mem);
    if (vr != VK_SUCCESS) {
        eng_buf_free(d, out);
        return cwt_seterr(err, errlen,
                          vr == VK_ERROR_OUT_OF_DEVICE_MEMORY ? CWT_ENOMEM : CWT_EVULKAN,
                          "allocating %llu bytes of device memory failed (VkResult %d)",
                          (unsigned long long)req.size, (int)vr);
    }
    vr = vkBindBufferMemory(d->dev, out->buf, out->mem, 0);
    if (vr == VK_SUCCESS && (d->mem_props.memoryTypes[type].propertyFlags & hv) == hv)
        vr = vkMapMemory(d->dev, out->mem, 0, VK_WHOLE_SIZE, 0, &out->map);
    if (vr != VK_SUCCESS) {
        eng_buf_free(d, out);
        return cwt_seterr(err, errlen, CWT_EVULKAN, "binding or mapping a buffer failed (%d)",
                          (int)vr);
    }
    out->size = size;
    return 0;
}

void eng_buf_free(struct eng_device *d, struct eng_buf *b)
{
    if (b->buf)
        vkDestroyBuffer(d->dev, b->buf, NULL);
    if (b->mem)
        vkFreeMemory(d->dev, b->mem, NULL); /* unmaps implicitly */
    memset(b, 0, sizeof(*b));
}

/* ---------------------------------------------------------------- pipelines */

int eng_pipeline(struct eng_device *d, enum cwt_spv_id id, VkPipeline *out, char *err,
                 size_t errlen)
{
    if ((int)id < 0 || id >= CWT_SPV_COUNT)
        return cwt_seterr(err, errlen, CWT_EINVAL, "unknown shader variant %d", (int)id);
    if (d->pipes[id]) {
        *out = d->pipes[id];
        return 0;
    }
    const struct cwt_spv *s = &cwt_spv_table[id];
    VkShaderModuleCreateInfo smci = {
        .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
        .codeSize = s->size,
        .pCode = s->code,
    };
    VkShaderModule mod;
    VKCHECK(vkCreateShaderModule(d->dev, &smci, NULL, &mod), "vkCreateShaderModule");
    /* Register-block sizes of the GEMM kernels (ids 1, 2); other shaders ignore them. */
    const uint32_t spec[2] = {8, 8};
    const VkSpecializationMapEntry ent[2] = {{1, 0, 4}, {2, 4, 4}};
    VkSpecializationInfo si = {
        .mapEntryCount = 2, .pMapEntries = ent, .dataSize = sizeof(spec), .pData = spec};
    VkComputePipelineCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage =
            {
                .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                .module = mod,
                .pName = "main",
                .pSpecializationInfo = &si,
            },
        .layout = d->pipe_layout,
    };
    VkResult vr = vkCreateComputePipelines(d->dev, d->cache, 1, &ci, NULL, &d->pipes[id]);
    vkDestroyShaderModule(d->dev, mod, NULL);
    if (vr != VK_SUCCESS) {
        d->pipes[id] = VK_NULL_HANDLE;
        return cwt_seterr(err, errlen, CWT_EVULKAN, "creating pipeline %s failed (%d)", s->name,
                          (int)vr);
    }
    *out = d->pipes[id];
    return 0;
}

/* ---------------------------------------------------------------- recording */

int eng_rec_init(struct eng_device *d, struct eng_rec *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof(*r));
    r->d = d;
    VkCommandBufferAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = d->cmd_pool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 1,
    };
    VKCHECK(vkAllocateCommandBuffers(d->dev, &ai, &r->cb), "vkAllocateCommandBuffers");
    return 0;
}

static void free_views(struct eng_rec *r)
{
    for (uint32_t i = 0; i < r->nviews; i++)
        vkDestroyBufferView(r->d->dev, r->views[i], NULL);
    r->nviews = 0;
}

void eng_rec_free(struct eng_rec *r)
{
    if (!r->d)
        return;
    free_views(r);
    free(r->views);
    for (uint32_t i = 0; i < r->npools; i++)
        vkDestroyDescriptorPool(r->d->dev, r->pools[i], NULL);
    if (r->qpool)
        vkDestroyQueryPool(r->d->dev, r->qpool, NULL);
    free(r->qid);
    free(r->qinfo);
    if (r->cb)
        vkFreeCommandBuffers(r->d->dev, r->d->cmd_pool, 1, &r->cb);
    memset(r, 0, sizeof(*r));
}

int eng_rec_begin(struct eng_rec *r, char *err, size_t errlen)
{
    free_views(r);
    for (uint32_t i = 0; i < r->npools; i++)
        vkDestroyDescriptorPool(r->d->dev, r->pools[i], NULL);
    r->npools = 0;
    r->sets_left = 0;
    r->failed = 0;
    r->err[0] = '\0';
    VKCHECK(vkResetCommandBuffer(r->cb, 0), "vkResetCommandBuffer");
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    VKCHECK(vkBeginCommandBuffer(r->cb, &bi), "vkBeginCommandBuffer");
    r->nq = 0;
    if (r->d->profile && !r->qpool) {
        /* profiling is best effort: without a pool nothing is timed */
        VkQueryPoolCreateInfo qi = {
            .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
            .queryType = VK_QUERY_TYPE_TIMESTAMP,
            .queryCount = ENG_PROFILE_QUERIES,
        };
        if (!r->qid)
            r->qid = malloc(ENG_PROFILE_QUERIES * sizeof(*r->qid));
        if (r->d->profile == 2 && !r->qinfo) /* best effort too: no lines without it */
            r->qinfo = malloc(ENG_PROFILE_QUERIES * sizeof(*r->qinfo));
        if (!r->qid || vkCreateQueryPool(r->d->dev, &qi, NULL, &r->qpool) != VK_SUCCESS)
            r->qpool = VK_NULL_HANDLE;
    }
    if (r->qpool) {
        vkCmdResetQueryPool(r->cb, r->qpool, 0, ENG_PROFILE_QUERIES);
        vkCmdWriteTimestamp(r->cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, r->qpool, 0);
    }
    return 0;
}

/* Profiling: a timestamp after the command just recorded, attributed to kernel id. */
static void stamp(struct eng_rec *r, int id)
{
    if (!r->qpool || r->nq + 1 >= ENG_PROFILE_QUERIES)
        return;
    r->qid[r->nq++] = id;
    vkCmdWriteTimestamp(r->cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, r->qpool, r->nq);
}

void eng_rec_profile_collect(struct eng_rec *r)
{
    if (!r->qpool || r->nq == 0)
        return;
    uint64_t ts[ENG_PROFILE_QUERIES];
    if (vkGetQueryPoolResults(r->d->dev, r->qpool, 0, r->nq + 1, sizeof(ts), ts, sizeof(ts[0]),
                              VK_QUERY_RESULT_64_BIT) != VK_SUCCESS)
        return;
    for (uint32_t i = 0; i < r->nq; i++) {
        r->d->prof_ns[r->qid[i]] += (double)(ts[i + 1] - ts[i]) * r->d->ts_period_ns;
        r->d->prof_calls[r->qid[i]]++;
        if (r->qinfo) /* CWT_ENG_PROFILE=2 */
            fprintf(stderr, "dispatch %4u %-22s %9.3f ms groups %u,%u,%u push %u,%u,%u\n", i,
                    r->qid[i] < CWT_SPV_COUNT ? cwt_spv_table[r->qid[i]].name : "(buffer copy)",
                    (double)(ts[i + 1] - ts[i]) * r->d->ts_period_ns / 1e6, r->qinfo[i][0],
                    r->qinfo[i][1], r->qinfo[i][2], r->qinfo[i][3], r->qinfo[i][4], r->qinfo[i][5]);
    }
}

int eng_rec_end(struct eng_rec *r, char *err, size_t errlen)
{
    VkResult vr = vkEndCommandBuffer(r->cb);
    if (r->failed)
        return cwt_seterr(err, errlen, r->failed, "%s", r->err);
    if (vr != VK_SUCCESS)
        return cwt_seterr(err, errlen, CWT_EVULKAN, "vkEndCommandBuffer failed (%d)", (int)vr);
    return 0;
}

static int new_pool(struct eng_rec *r)
{
    if (r->npools == ENG_MAX_POOLS)
        return cwt_seterr(r->err, sizeof(r->err), CWT_ETOOBIG,
                          "too many dispatches in one command buffer");
    VkDescriptorPoolSize ps[2] = {
        {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, ENG_SETS_PER_POOL * ENG_BINDINGS},
        {VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER, ENG_SETS_PER_POOL * ENG_TEX_BINDINGS},
    };
    VkDescriptorPoolCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
        .maxSets = ENG_SETS_PER_POOL,
        .poolSizeCount = 2,
        .pPoolSizes = ps,
    };
    VkResult vr = vkCreateDescriptorPool(r->d->dev, &ci, NULL, &r->pools[r->npools]);
    if (vr != VK_SUCCESS)
        return cwt_seterr(r->err, sizeof(r->err), CWT_EVULKAN, "vkCreateDescriptorPool failed (%d)",
                          (int)vr);
    r->npools++;
    r->sets_left = ENG_SETS_PER_POOL;
    return 0;
}

static void barrier(VkCommandBuffer cb, VkPipelineStageFlags src, VkAccessFlags src_access)
{
    VkMemoryBarrier mb = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = src_access,
        .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                         VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
    };
    vkCmdPipelineBarrier(cb, src,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT, 0,
                         1, &mb, 0, NULL, 0, NULL);
}

/* Creates an r32f view of t owned by r (destroyed when r is re-begun or freed). */
static int tex_view(struct eng_rec *r, struct eng_tref t, int vec4, VkBufferView *out)
{
    if (r->nviews == r->cap_views) {
        uint32_t cap = r->cap_views ? r->cap_views * 2 : 64;
        VkBufferView *v = realloc(r->views, (size_t)cap * sizeof(*v));
        if (!v)
            return cwt_seterr(r->err, sizeof(r->err), CWT_ENOMEM, "out of memory (buffer views)");
        r->views = v;
        r->cap_views = cap;
    }
    VkBufferViewCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_VIEW_CREATE_INFO,
        .buffer = t.buf,
        .format = vec4 ? VK_FORMAT_R32G32B32A32_SFLOAT : VK_FORMAT_R32_SFLOAT,
        .offset = t.off,
        .range = vec4 ? (t.bytes + 15) / 16 * 16 : t.bytes,
    };
    VkResult vr = vkCreateBufferView(r->d->dev, &ci, NULL, &r->views[r->nviews]);
    if (vr != VK_SUCCESS)
        return cwt_seterr(r->err, sizeof(r->err), CWT_EVULKAN, "vkCreateBufferView failed (%d)",
                          (int)vr);
    *out = r->views[r->nviews++];
    return 0;
}

void eng_rec_dispatch(struct eng_rec *r, enum cwt_spv_id id, const struct eng_tref *bufs,
                      uint32_t nbufs, const void *push, uint32_t push_size, uint32_t gx,
                      uint32_t gy, uint32_t gz)
{
    eng_rec_dispatch_tex(r, id, bufs, nbufs, NULL, 0, 0, push, push_size, gx, gy, gz);
}

void eng_rec_dispatch_tex(struct eng_rec *r, enum cwt_spv_id id, const struct eng_tref *bufs,
                          uint32_t nbufs, const struct eng_tref *tex, uint32_t ntex,
                          uint32_t vec4_mask, const void *push, uint32_t push_size, uint32_t gx,
                          uint32_t gy, uint32_t gz)
{
    if (r->failed)
        return;
    if (gx == 0 || gy == 0 || gz == 0)
        return; /* empty shapes record nothing */
    for (uint32_t i = 0; i < ntex && ntex <= ENG_TEX_BINDINGS; i++)
        if (tex[i].bytes == 0 ||
            tex[i].bytes > (uint64_t)r->d->max_texel_elements * ((vec4_mask >> i & 1u) ? 16 : 4)) {
            r->failed = cwt_seterr(r->err, sizeof(r->err), CWT_EINVAL,
                                   "texel buffer range is empty or exceeds the device limit");
            return;
        }
    if (nbufs > ENG_BINDINGS || ntex > ENG_TEX_BINDINGS || push_size > ENG_PUSH_BYTES) {
        r->failed = cwt_seterr(r->err, sizeof(r->err), CWT_EINVAL, "bad dispatch arguments");
        return;
    }
    VkPipeline pipe;
    int rc = eng_pipeline(r->d, id, &pipe, r->err, sizeof(r->err));
    if (rc == 0 && r->sets_left == 0)
        rc = new_pool(r);
    if (rc != 0) {
        r->failed = rc;
        return;
    }
    VkDescriptorSetAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
        .descriptorPool = r->pools[r->npools - 1],
        .descriptorSetCount = 1,
        .pSetLayouts = &r->d->set_layout,
    };
    VkDescriptorSet set;
    VkResult vr = vkAllocateDescriptorSets(r->d->dev, &ai, &set);
    if (vr != VK_SUCCESS) {
        r->failed = cwt_seterr(r->err, sizeof(r->err), CWT_EVULKAN,
                               "vkAllocateDescriptorSets failed (%d)", (int)vr);
        return;
    }
    r->sets_left--;
    VkDescriptorBufferInfo bi[ENG_BINDINGS];
    VkWriteDescriptorSet w[ENG_BINDINGS + ENG_TEX_BINDINGS];
    VkBufferView views[ENG_TEX_BINDINGS];
    for (uint32_t i = 0; i < ENG_BINDINGS; i++) {
        if (i < nbufs && bufs[i].bytes > 0)
            bi[i] = (VkDescriptorBufferInfo){bufs[i].buf, bufs[i].off, bufs[i].bytes};
        else
            bi[i] = (VkDescriptorBufferInfo){r->d->dummy, 0, VK_WHOLE_SIZE};
        w[i] = (VkWriteDescriptorSet){
            .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
            .dstSet = set,
            .dstBinding = i,
            .descriptorCount = 1,
            .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            .pBufferInfo = &bi[i],
        };
    }
    for (uint32_t i = 0; i < ntex; i++) {
        int vrc = tex_view(r, tex[i], (int)(vec4_mask >> i & 1u), &views[i]);
        if (vrc != 0) {
            r->failed = vrc;
            return;
        }
        w[ENG_BINDINGS + i] = (VkWriteDescriptorSet){
            .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
            .dstSet = set,
            .dstBinding = ENG_BINDINGS + i,
            .descriptorCount = 1,
            .descriptorType = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER,
            .pTexelBufferView = &views[i],
        };
    }
    vkUpdateDescriptorSets(r->d->dev, ENG_BINDINGS + ntex, w, 0, NULL);
    vkCmdBindPipeline(r->cb, VK_PIPELINE_BIND_POINT_COMPUTE, pipe);
    vkCmdBindDescriptorSets(r->cb, VK_PIPELINE_BIND_POINT_COMPUTE, r->d->pipe_layout, 0, 1, &set, 0,
                            NULL);
    uint8_t pc[ENG_PUSH_BYTES] = {0};
    if (push_size)
        memcpy(pc, push, push_size);
    vkCmdPushConstants(r->cb, r->d->pipe_layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, ENG_PUSH_BYTES,
                       pc);
    vkCmdDispatch(r->cb, gx, gy, gz);
    barrier(r->cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT);
    if (r->qinfo && r->qpool && r->nq + 1 < ENG_PROFILE_QUERIES) {
        uint32_t *q = r->qinfo[r->nq];
        q[0] = gx;
        q[1] = gy;
        q[2] = gz;
        memcpy(q + 3, pc, 3 * sizeof(uint32_t));
    }
    stamp(r, (int)id);
}

void eng_rec_copy(struct eng_rec *r, VkBuffer src, VkDeviceSize src_off, VkBuffer dst,
                  VkDeviceSize dst_off, VkDeviceSize bytes)
{
    if (r->failed || bytes == 0)
        return;
    VkBufferCopy c = {src_off, dst_off, bytes};
    vkCmdCopyBuffer(r->cb, src, dst, 1, &c);
    barrier(r->cb, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT);
    stamp(r, CWT_SPV_COUNT);
}

int eng_fence_create(struct eng_device *d, VkFence *out)
{
    VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    return vkCreateFence(d->dev, &fci, NULL, out) == VK_SUCCESS ? 0 : CWT_EVULKAN;
}

int eng_submit(struct eng_device *d, VkCommandBuffer cb, VkFence fence)
{
    if (vkResetFences(d->dev, 1, &fence) != VK_SUCCESS)
        return CWT_EVULKAN;
    VkSubmitInfo si = {
        .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
        .commandBufferCount = 1,
        .pCommandBuffers = &cb,
    };
    return vkQueueSubmit(d->queue, 1, &si, fence) == VK_SUCCESS ? 0 : CWT_EVULKAN;
}

int eng_wait(struct eng_device *d, VkFence fence)
{
    VkResult vr;
    do
        vr = vkWaitForFences(d->dev, 1, &fence, VK_TRUE, UINT64_C(10000000000));
    while (vr == VK_TIMEOUT);
    return vr == VK_SUCCESS ? 0 : CWT_EVULKAN;
}

int eng_rec_run(struct eng_rec *r, char *err, size_t errlen)
{
    int rc = eng_rec_end(r, err, errlen);
    if (rc != 0)
        return rc;
    VkFence f;
    if (eng_fence_create(r->d, &f) != 0)
        return cwt_seterr(err, errlen, CWT_EVULKAN, "vkCreateFence failed");
    rc = eng_submit(r->d, r->cb, f);
    if (rc == 0)
        rc = eng_wait(r->d, f);
    vkDestroyFence(r->d->dev, f, NULL);
    if (rc == 0)
        eng_rec_profile_collect(r);
    if (rc != 0)
        return cwt_seterr(err, errlen, rc, "submitting or waiting for work failed");
    return 0;
}
