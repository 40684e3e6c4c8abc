/*
 * keep_driver.c - linked into every engine test: keeps lavapipe's library loaded until the
 * process exits.
 *
 * The Vulkan loader unloads its drivers in vkDestroyInstance. Lavapipe (Mesa 22.3.6 in
 * Debian 12) keeps an allocation alive that only its own static data points to; once the
 * library is unloaded, LeakSanitizer reports it from an "<unknown module>", which no
 * suppression can name, and the sanitizer run fails on a driver's leak. Opened here with
 * RTLD_NODELETE, the library stays mapped: its data still points to the allocation, and any
 * report still names libvulkan_lvp.so for lsan.supp. Where lavapipe is not installed, this
 * does nothing.
 */
#include <dlfcn.h>

__attribute__((constructor)) static void keep_lavapipe_loaded(void)
{
    /* The handle is left open on purpose: RTLD_NODELETE is what matters. */
    (void)dlopen("libvulkan_lvp.so", RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
}
