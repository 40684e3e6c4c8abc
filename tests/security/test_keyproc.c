/*
 * test_keyproc.c - issue 18: cwtd's key process (daemon/keyproc.h) is the only key holder.
 * Through its socket a caller gets exactly two things: a signature under a context, and the
 * content key of an entry sealed to this site. It loads the keys itself and reports a refusal
 * (a secret key readable by others) instead of keys; any other message, or a request that
 * does not decode, makes it exit rather than answer; and it exits when its peer goes away.
 * Its memory is closed to every process of its own uid that lacks CAP_SYS_PTRACE, whoever
 * started it, and it leaves no core file.
 */
#include <errno.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "crypto/keyops.h"
#include "daemon/keyproc.h"
#include "daemon/proto.h"
#include "tests/security/sec_fixture.h"
#include "tests/test_tmp.h"

struct kfx {
    char dir[512];
    struct cwt_config cfg;
    struct site_keys pub;
};

static int kfx_setup(void **state)
{
    struct kfx *k = calloc(1, sizeof(*k));
    char err[CWT_ERRLEN];

    assert_non_null(k);
    assert_int_equal(crypto_init(), 0);
    assert_int_equal(test_tmp_path(k->dir, sizeof(k->dir), "keyproc"), 0);
    assert_int_equal(file_mkdir_p(k->dir, 0700, err, sizeof(err)), 0);
    snprintf(k->cfg.keys_dir, sizeof(k->cfg.keys_dir), "%s/keys", k->dir);
    assert_int_equal(keys_generate(k->cfg.keys_dir, "site-k", err, sizeof(err)), 0);
    assert_int_equal(keys_load_public(k->cfg.keys_dir, &k->pub, err, sizeof(err)), 0);
    *state = k;
    return 0;
}

static int kfx_teardown(void **state)
{
    struct kfx *k = *state;

    assert_int_equal(test_tmp_remove(k->dir), 0);
    free(k);
    return 0;
}

static int wait_exit(pid_t pid)
{
    int status;

    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static void test_signs_under_a_context_and_opens_content_keys(void **state)
{
    struct kfx *k = *state;
    struct keyproc_client kp;
    struct key_ops ops;
    uint8_t digest[64], sig[64], entry[KEYOPS_ENTRY_LEN], content[32], *got;
    char err[CWT_ERRLEN];

    keyproc_start(&k->cfg, &kp);
    assert_int_equal(keyproc_handshake(&kp, &k->pub, err, sizeof(err)), 0);
    keyproc_ops(&kp, &ops);

    randombytes_buf(digest, sizeof(digest));
    assert_int_equal(ops.sign(ops.ctx, KEYOPS_CTX_BUNDLE, digest, sig), 0);
    assert_int_equal(keyops_verify(KEYOPS_CTX_BUNDLE, digest, sig, k->pub.sign_pk), 0);
    assert_int_equal(keyops_verify(KEYOPS_CTX_AUDIT_EXPORT, digest, sig, k->pub.sign_pk),
                     CWT_EB_SIGNATURE);
    assert_int_equal(ops.sign(ops.ctx, KEYOPS_CTX_AUDIT_EXPORT, digest, sig), 0);
    assert_int_equal(keyops_verify(KEYOPS_CTX_AUDIT_EXPORT, digest, sig, k->pub.sign_pk), 0);
    /* No context-free signature, whoever asks. */
    assert_int_equal(ops.sign(ops.ctx, KEYOPS_CTX_LEGACY, digest, sig), CWT_EINVAL);
    assert_int_equal(kp.n_sign, 2);

    randombytes_buf(content, sizeof(content));
    assert_int_equal(crypto_box_seal(entry, content, 32, k->pub.box_pk), 0);
    got = sodium_malloc(32);
    assert_non_null(got);
    assert_int_equal(ops.open_key(ops.ctx, entry, got), 0);
    assert_memory_equal(got, content, 32);
    entry[10] ^= 1;
    assert_int_equal(ops.open_key(ops.ctx, entry, got), CWT_EB_DECRYPT);
    sodium_free(got);

    /* The peer goes away: the key process exits 0. */
    close(kp.sock);
    {
        int status = wait_exit(kp.pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
}

/* A request of another type (here a trainer's message) is an impossible state: it exits. */
static void test_other_messages_end_it(void **state)
{
    struct kfx *k = *state;
    struct keyproc_client kp;
    struct proto_msg m;
    char err[CWT_ERRLEN];
    int status;

    keyproc_start(&k->cfg, &kp);
    assert_int_equal(keyproc_handshake(&kp, &k->pub, err, sizeof(err)), 0);
    memset(&m, 0, sizeof(m));
    m.fd = -1;
    m.type = PROTO_PAUSE;
    assert_int_equal(proto_send(kp.sock, &m), 0);
    assert_int_equal(proto_recv(kp.sock, &m, err, sizeof(err)), CWT_ENOENT);
    status = wait_exit(kp.pid);
    assert_true(WIFEXITED(status));
    assert_int_not_equal(WEXITSTATUS(status), 0);
    close(kp.sock);

    /* Raw bytes that are no message at all. */
    keyproc_start(&k->cfg, &kp);
    assert_int_equal(keyproc_handshake(&kp, &k->pub, err, sizeof(err)), 0);
    assert_int_equal(send(kp.sock, "not a message", 13, 0), 13);
    status = wait_exit(kp.pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    close(kp.sock);
}

/* A secret key readable by others: the key process refuses it and says so in its greeting. */
static void test_refusal_is_reported(void **state)
{
    struct kfx *k = *state;
    struct keyproc_client kp;
    char path[700], err[CWT_ERRLEN];
    int status;

    snprintf(path, sizeof(path), "%s/sign.key", k->cfg.keys_dir);
    assert_int_equal(chmod(path, 0644), 0);
    keyproc_start(&k->cfg, &kp);
    assert_int_equal(keyproc_handshake(&kp, &k->pub, err, sizeof(err)), CWT_EPERM);
    assert_non_null(strstr(err, "sign.key"));
    status = wait_exit(kp.pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 2);
    close(kp.sock);
}

/* Its seccomp list has no open: a key process that tried to read a file would be killed.
 * Checked from outside through /proc: the filter is on (Seccomp: 2), with no_new_privs. */
static void test_it_is_confined(void **state)
{
    struct kfx *k = *state;
    struct keyproc_client kp;
    char path[64], line[256], err[CWT_ERRLEN];
    int seccomp = -1, nnp = -1;
    FILE *f;

    keyproc_start(&k->cfg, &kp);
    assert_int_equal(keyproc_handshake(&kp, &k->pub, err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "/proc/%ld/status", (long)kp.pid);
    f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        sscanf(line, "Seccomp: %d", &seccomp);
        sscanf(line, "NoNewPrivs: %d", &nnp);
    }
    fclose(f);
    assert_int_equal(seccomp, 2);
    assert_int_equal(nnp, 1);
    close(kp.sock);
    (void)wait_exit(kp.pid);
}

/* Drops every capability of the calling process; its uid stays. Returns 0 or -1. */
static int drop_all_caps(void)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct none[2];

    memset(none, 0, sizeof(none));
    return syscall(SYS_capset, &hdr, none) == 0 ? 0 : -1;
}

/* In a child: drops every capability (the uid stays), then opens /proc/PID/mem of target.
 * Exits 0 when the open succeeds, 1 when it is refused with EACCES or EPERM, 2 otherwise. */
static int open_mem_without_caps(pid_t target)
{
    pid_t pid = fork();
    int status;

    assert_true(pid >= 0);
    if (pid == 0) {
        char path[64];
        int fd;

        if (drop_all_caps() != 0)
            _exit(2);
        snprintf(path, sizeof(path), "/proc/%ld/mem", (long)target);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0)
            _exit(0);
        _exit(errno == EACCES || errno == EPERM ? 1 : 2);
    }
    status = wait_exit(pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* The attack: a process of the key process's own uid without CAP_SYS_PTRACE opens
 * /proc/PID/mem to read the secret keys. The control: it works on a process of that uid that
 * is dumpable and holds no capability, as the key process does (a target with capabilities the
 * reader lacks is refused anyway). It is refused on the key process, which turns dumps off
 * itself rather than relying on cwtd. Its core limit is 0, hard and soft. */
static void test_memory_is_closed_to_its_own_uid(void **state)
{
    struct kfx *k = *state;
    struct keyproc_client kp;
    char path[64], line[256], err[CWT_ERRLEN];
    int core = 0;
    FILE *f;
    pid_t control;
    int status, ready[2], opened;
    char byte = 0;

    keyproc_start(&k->cfg, &kp);
    assert_int_equal(keyproc_handshake(&kp, &k->pub, err, sizeof(err)), 0);
    /* The control says when it has dropped its capabilities: before that, the reader would be
     * refused for the capabilities alone. */
    assert_int_equal(pipe(ready), 0);
    control = fork();
    assert_true(control >= 0);
    if (control == 0) {
        close(ready[0]);
        if (drop_all_caps() != 0 || write(ready[1], "r", 1) != 1)
            _exit(2);
        pause();
        _exit(0);
    }
    close(ready[1]);
    opened = read(ready[0], &byte, 1) == 1 ? open_mem_without_caps(control) : -1;
    close(ready[0]);
    /* Reaped before any assertion, so that a failure leaves no child holding the output. */
    assert_int_equal(kill(control, SIGKILL), 0);
    status = wait_exit(control);
    assert_int_equal(opened, 0);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(open_mem_without_caps(kp.pid), 1);
    snprintf(path, sizeof(path), "/proc/%ld/limits", (long)kp.pid);
    f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "Max core file size", 18) == 0) {
            char soft[32], hard[32];
            assert_int_equal(sscanf(line + 18, "%31s %31s", soft, hard), 2);
            assert_string_equal(soft, "0");
            assert_string_equal(hard, "0");
            core = 1;
        }
    fclose(f);
    assert_int_equal(core, 1);
    close(kp.sock);
    (void)wait_exit(kp.pid);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_signs_under_a_context_and_opens_content_keys,
                                        kfx_setup, kfx_teardown),
        cmocka_unit_test_setup_teardown(test_other_messages_end_it, kfx_setup, kfx_teardown),
        cmocka_unit_test_setup_teardown(test_refusal_is_reported, kfx_setup, kfx_teardown),
        cmocka_unit_test_setup_teardown(test_it_is_confined, kfx_setup, kfx_teardown),
        cmocka_unit_test_setup_teardown(test_memory_is_closed_to_its_own_uid, kfx_setup,
                                        kfx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
