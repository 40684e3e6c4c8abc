/*
 * test_config.c - cwtd.conf and roster.conf: strict parsing, errors with file and line,
 * key lines, and a roster fingerprint that ignores layout but not content.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"
#include "config/config.h"
#include "tests/test_tmp.h"

static char tmpdir[PATH_MAX];

static int setup(void **state)
{
    char err[CWT_ERRLEN];

    (void)state;
    if (sodium_init() < 0)
        return -1;
    if (test_tmp_path(tmpdir, sizeof(tmpdir), "test_config") != 0)
        return -1;
    return file_mkdir_p(tmpdir, 0700, err, sizeof(err));
}

static int teardown(void **state)
{
    (void)state;
    return test_tmp_remove(tmpdir) == 0 ? 0 : -1;
}

static void write_text(const char *name, const char *text, char *path)
{
    char err[CWT_ERRLEN];

    snprintf(path, PATH_MAX, "%s/%s", tmpdir, name);
    unlink(path);
    assert_int_equal(file_write_atomic(path, text, strlen(text), 0644, err, sizeof(err)), 0);
}

/* A fresh key line for a site, made from random keys. */
static void make_keyline(const char *id, char *out, size_t outlen)
{
    uint8_t spk[32], ssk[64], bpk[32], bsk[32];

    crypto_sign_keypair(spk, ssk);
    crypto_box_keypair(bpk, bsk);
    assert_int_equal(keyline_format(id, spk, bpk, out, outlen, NULL), 0);
}

static void test_site_config_defaults_and_paths(void **state)
{
    struct cwt_config cfg;
    char path[PATH_MAX], err[CWT_ERRLEN];

    (void)state;
    write_text("a.conf", "site_id = \"site-a\";\ndirs = { store = \"st\"; };\n", path);
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg.site_id, "site-a");
    assert_non_null(strstr(cfg.store_dir, "/st"));
    assert_int_equal(cfg.store_dir[0], '/');
    assert_non_null(strstr(cfg.inbox_dir, "/inbox"));
    assert_string_equal(cfg.gpu_device, "auto");
    assert_int_equal(cfg.rescan_seconds, 30);
}

static void test_site_config_unknown_key_names_file_and_line(void **state)
{
    struct cwt_config cfg;
    char path[PATH_MAX], err[CWT_ERRLEN];

    (void)state;
    write_text("b.conf", "site_id = \"site-a\";\n\ngpu = { devise = \"auto\"; };\n", path);
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), CWT_ECONFIG);
    assert_non_null(strstr(err, "b.conf:3: gpu.devise: unknown key"));
}

static void test_site_config_type_error(void **state)
{
    struct cwt_config cfg;
    char path[PATH_MAX], err[CWT_ERRLEN];

    (void)state;
    write_text("c.conf", "site_id = \"s\";\ndaemon = { rescan_seconds = \"often\"; };\n", path);
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), CWT_ECONFIG);
    assert_non_null(strstr(err, "c.conf:2: daemon.rescan_seconds: expected an integer"));
    write_text("d.conf", "site_id = \"s\";\ndirs = { store = ; };\n", path); /* syntax */
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), CWT_ECONFIG);
    assert_non_null(strstr(err, "d.conf:"));
    write_text("e.conf", "@include \"/etc/passwd\"\nsite_id = \"s\";\n", path);
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), CWT_ECONFIG);
    assert_non_null(strstr(err, "@include"));
    snprintf(path, sizeof(path), "%s/absent.conf", tmpdir);
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), CWT_ENOENT);
}

/* daemon.trainer_socket: empty when absent; refused without daemon.trainer_user (whose uid the
 * service manager must start the trainer as) and longer than a socket path; a relative path
 * is made absolute against the site folder, which is the configuration's folder unless
 * dirs.site says otherwise. */
static void test_site_config_trainer_socket(void **state)
{
    struct cwt_config cfg;
    char path[PATH_MAX], err[CWT_ERRLEN], text[512], want[PATH_MAX], dir[PATH_MAX];
    char long_path[110];

    (void)state;
    write_text("ts1.conf", "site_id = \"s\";\ndaemon = { user = \"cwt\"; };\n", path);
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg.trainer_socket, "");
    assert_string_equal(cfg.trainer_user, "");

    write_text("ts2.conf",
               "site_id = \"s\";\ndaemon = {\n  user = \"cwt\";\n"
               "  trainer_socket = \"/run/cwtd-trainer.sock\";\n};\n",
               path);
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), CWT_ECONFIG);
    assert_non_null(strstr(err, "ts2.conf:4: daemon.trainer_socket: needs daemon.trainer_user"));

    write_text("ts3.conf",
               "site_id = \"s\";\ndaemon = { user = \"cwt\"; trainer_user = \"cwt-train\";\n"
               "  trainer_socket = \"/run/cwtd-trainer.sock\"; };\n",
               path);
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg.trainer_socket, "/run/cwtd-trainer.sock");
    assert_string_equal(cfg.trainer_user, "cwt-train");

    /* Relative: against the configuration's folder, or dirs.site. */
    write_text("ts4.conf",
               "site_id = \"s\";\ndaemon = { user = \"cwt\"; trainer_user = \"cwt-train\";\n"
               "  trainer_socket = \"run/trainer.sock\"; };\n",
               path);
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), 0);
    assert_non_null(realpath(tmpdir, dir));
    snprintf(want, sizeof(want), "%s/run/trainer.sock", dir);
    assert_string_equal(cfg.trainer_socket, want);
    write_text("ts5.conf",
               "site_id = \"s\";\ndirs = { site = \"/srv/site-a\"; };\n"
               "daemon = { user = \"cwt\"; trainer_user = \"cwt-train\";\n"
               "  trainer_socket = \"trainer.sock\"; };\n",
               path);
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg.trainer_socket, "/srv/site-a/trainer.sock");

    /* sun_path holds 107 bytes and a NUL: 107 is taken, 108 refused. */
    memset(long_path, 'a', sizeof(long_path));
    long_path[0] = '/';
    long_path[107] = '\0';
    snprintf(text, sizeof(text),
             "site_id = \"s\";\ndaemon = { user = \"cwt\"; trainer_user = \"cwt-train\";\n"
             "  trainer_socket = \"%s\"; };\n",
             long_path);
    write_text("ts6.conf", text, path);
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg.trainer_socket, long_path);
    long_path[107] = 'a';
    long_path[108] = '\0';
    snprintf(text, sizeof(text),
             "site_id = \"s\";\ndaemon = { user = \"cwt\"; trainer_user = \"cwt-train\";\n"
             "  trainer_socket = \"%s\"; };\n",
             long_path);
    write_text("ts7.conf", text, path);
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), CWT_ECONFIG);
    assert_non_null(
        strstr(err, "ts7.conf:3: daemon.trainer_socket: longer than a socket path may be (107)"));

    /* Not a string. */
    write_text("ts8.conf",
               "site_id = \"s\";\ndaemon = { user = \"cwt\"; trainer_user = \"cwt-train\";\n"
               "  trainer_socket = 3; };\n",
               path);
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), CWT_ECONFIG);
    assert_non_null(strstr(err, "ts8.conf:3: daemon.trainer_socket"));
}

static void test_roster_input_error_message(void **state)
{
    struct cwt_roster *r = calloc(1, sizeof(*r));
    char path[PATH_MAX], err[CWT_ERRLEN];

    (void)state;
    assert_non_null(r);
    write_text("r1.conf", "federation = \"f\";\nrecipe = {\n  input = [28, 28];\n};\n", path);
    assert_int_equal(roster_load(path, r, err, sizeof(err)), CWT_ECONFIG);
    assert_non_null(strstr(err, "r1.conf:3: recipe.input: expected 3 positive integers"));
    write_text("r2.conf", "federation = \"f\";\nrecipe = { train = { lr = -1.0; }; };\n", path);
    assert_int_equal(roster_load(path, r, err, sizeof(err)), CWT_ECONFIG);
    assert_non_null(strstr(err, "recipe.train.lr"));
    write_text("r3.conf", "federation = \"f\";\nrecipe = { model = { name = \"vgg\"; }; };\n",
               path);
    assert_int_equal(roster_load(path, r, err, sizeof(err)), CWT_ECONFIG);
    assert_non_null(strstr(err, "unknown model"));
    free(r);
}

static void test_roster_round_trip_and_fingerprint(void **state)
{
    struct cwt_roster *r = calloc(1, sizeof(*r)), *r2 = calloc(1, sizeof(*r2));
    char path[PATH_MAX], err[CWT_ERRLEN], ka[256], kb[256], text[2048];
    uint8_t fp1[32], fp2[32], fp3[32];

    (void)state;
    assert_non_null(r);
    assert_non_null(r2);
    make_keyline("site-a", ka, sizeof(ka));
    make_keyline("site-b", kb, sizeof(kb));
    snprintf(text, sizeof(text),
             "# a comment\nfederation = \"fed\";\nsites = ( { id = \"site-a\"; key = \"%s\"; },\n"
             "  { key = \"%s\"; id = \"site-b\"; } );\nrecipe = { classes = 3; seed = 7; };\n",
             ka, kb);
    write_text("r4.conf", text, path);
    assert_int_equal(roster_load(path, r, err, sizeof(err)), 0);
    assert_int_equal(r->n_sites, 2);
    assert_int_equal(roster_find_site(r, "site-b"), 1);
    assert_int_equal(roster_find_key_id(r, r->sites[0].key_id), 0);
    assert_int_equal(roster_fingerprint(r, fp1), 0);

    /* Saved in canonical layout, reloaded: same fingerprint. */
    snprintf(path, sizeof(path), "%s/r5.conf", tmpdir);
    assert_int_equal(roster_save(path, r, err, sizeof(err)), 0);
    assert_int_equal(roster_load(path, r2, err, sizeof(err)), 0);
    assert_int_equal(roster_fingerprint(r2, fp2), 0);
    assert_memory_equal(fp1, fp2, 32);

    /* Order of sites matters. */
    r2->sites[0] = r->sites[1];
    r2->sites[1] = r->sites[0];
    assert_int_equal(roster_fingerprint(r2, fp3), 0);
    assert_memory_not_equal(fp1, fp3, 32);
    /* So does the recipe. */
    *r2 = *r;
    r2->recipe.lr *= 2;
    assert_int_equal(roster_fingerprint(r2, fp3), 0);
    assert_memory_not_equal(fp1, fp3, 32);

    /* Duplicate ids are refused. */
    snprintf(text, sizeof(text),
             "federation = \"fed\";\nrecipe = {};\nsites = ( { id = \"site-a\"; key = \"%s\"; },"
             "\n { id = \"site-a\"; key = \"%s\"; } );\n",
             ka, ka);
    write_text("r6.conf", text, path);
    assert_int_equal(roster_load(path, r2, err, sizeof(err)), CWT_ECONFIG);
    assert_non_null(strstr(err, "listed twice"));
    /* Grouped hex for reading aloud: 16 groups of 4 in 80 bytes. */
    {
        char text80[80];
        roster_fingerprint_text(fp1, text80, sizeof(text80));
        assert_int_equal(strlen(text80), 79);
        assert_int_equal(text80[4], ' ');
    }
    free(r);
    free(r2);
}

/* recipe.cycle.select: parsed by name, round-trips through the canonical text, changes the
 * fingerprint when not the default, and leaves a roster without it with its old text. */
static void test_roster_select_metric(void **state)
{
    struct cwt_roster *r = calloc(1, sizeof(*r)), *r2 = calloc(1, sizeof(*r2));
    char path[PATH_MAX], err[CWT_ERRLEN], ka[256], text[2048];
    uint8_t fp1[32], fp2[32];

    (void)state;
    assert_non_null(r);
    assert_non_null(r2);
    make_keyline("site-a", ka, sizeof(ka));
    snprintf(text, sizeof(text),
             "federation = \"fed\";\nsites = ( { id = \"site-a\"; key = \"%s\"; } );\n"
             "recipe = { classes = 3; cycle = { select = \"balanced_accuracy\"; }; };\n",
             ka);
    write_text("s1.conf", text, path);
    assert_int_equal(roster_load(path, r, err, sizeof(err)), 0);
    assert_int_equal(r->recipe.select, CWT_SEL_BALANCED_ACCURACY);
    assert_int_equal(roster_fingerprint(r, fp1), 0);
    snprintf(path, sizeof(path), "%s/s2.conf", tmpdir);
    assert_int_equal(roster_save(path, r, err, sizeof(err)), 0);
    assert_int_equal(roster_load(path, r2, err, sizeof(err)), 0);
    assert_int_equal(r2->recipe.select, CWT_SEL_BALANCED_ACCURACY);
    assert_int_equal(roster_fingerprint(r2, fp2), 0);
    assert_memory_equal(fp1, fp2, 32);
    r2->recipe.select = CWT_SEL_ACCURACY;
    assert_int_equal(roster_fingerprint(r2, fp2), 0);
    assert_memory_not_equal(fp1, fp2, 32);
    /* The default is not written, so the saved roster has no select line. */
    assert_int_equal(roster_save(path, r2, err, sizeof(err)), 0);
    {
        FILE *f = fopen(path, "r");
        size_t n;
        assert_non_null(f);
        n = fread(text, 1, sizeof(text) - 1, f);
        text[n] = '\0';
        fclose(f);
        assert_null(strstr(text, "select"));
    }
    snprintf(text, sizeof(text),
             "federation = \"fed\";\nsites = ( { id = \"site-a\"; key = \"%s\"; } );\n"
             "recipe = { classes = 3; cycle = { select = \"f1\"; }; };\n",
             ka);
    write_text("s3.conf", text, path);
    assert_int_equal(roster_load(path, r2, err, sizeof(err)), CWT_ECONFIG);
    assert_non_null(strstr(err, "recipe.cycle.select"));
    free(r);
    free(r2);
}

/* recipe.init: a plain file name beside the roster and 64 hex digits; the hash is part of the
 * fingerprint and survives the canonical text; paths and bad hashes are refused. */
static void test_roster_init_weights(void **state)
{
    static const char *const bad[] = {
        "file = \"../init.safetensors\"; blake2b = \"%s\";",
        "file = \"/etc/passwd\"; blake2b = \"%s\";",
        "file = \"sub/init.safetensors\"; blake2b = \"%s\";",
        "file = \"init.safetensors\"; blake2b = \"%.62s\";",
        "file = \"init.safetensors\"; blake2b = \"%sg\";",
        "file = \"init.safetensors\"; blake2b = \"%s\"; url = \"x\";",
        "blake2b = \"%s\";",
    };
    static const char hex[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    struct cwt_roster *r = calloc(1, sizeof(*r)), *r2 = calloc(1, sizeof(*r2));
    char path[PATH_MAX], err[CWT_ERRLEN], ka[256], text[2048], init[256], ipath[PATH_MAX];
    uint8_t fp1[32], fp2[32];

    (void)state;
    assert_non_null(r);
    assert_non_null(r2);
    make_keyline("site-a", ka, sizeof(ka));
    snprintf(text, sizeof(text),
             "federation = \"fed\";\nsites = ( { id = \"site-a\"; key = \"%s\"; } );\n"
             "recipe = { classes = 3; init = { file = \"init.safetensors\"; blake2b = \"%s\"; "
             "}; };\n",
             ka, hex);
    write_text("i1.conf", text, path);
    assert_int_equal(roster_load(path, r, err, sizeof(err)), 0);
    assert_true(r->recipe.has_init);
    assert_int_equal(r->recipe.init_hash[1], 0x11);
    assert_int_equal(roster_init_path(r, ipath, sizeof(ipath)), 0);
    snprintf(text, sizeof(text), "%s/init.safetensors", tmpdir);
    assert_string_equal(ipath, text);
    assert_int_equal(roster_fingerprint(r, fp1), 0);
    snprintf(path, sizeof(path), "%s/i2.conf", tmpdir);
    assert_int_equal(roster_save(path, r, err, sizeof(err)), 0);
    assert_int_equal(roster_load(path, r2, err, sizeof(err)), 0);
    assert_int_equal(roster_fingerprint(r2, fp2), 0);
    assert_memory_equal(fp1, fp2, 32);
    r2->recipe.init_hash[31] ^= 1;
    assert_int_equal(roster_fingerprint(r2, fp2), 0);
    assert_memory_not_equal(fp1, fp2, 32);
    r2->recipe.has_init = 0;
    assert_int_equal(roster_init_path(r2, ipath, sizeof(ipath)), CWT_ENOENT);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(init, sizeof(init), bad[i], hex);
        snprintf(text, sizeof(text),
                 "federation = \"fed\";\nsites = ( { id = \"site-a\"; key = \"%s\"; } );\n"
                 "recipe = { classes = 3; init = { %s }; };\n",
                 ka, init);
        write_text("i3.conf", text, path);
        if (roster_load(path, r2, err, sizeof(err)) != CWT_ECONFIG)
            fail_msg("recipe.init %zu was accepted: %s", i, init);
        assert_non_null(strstr(err, "recipe.init"));
    }
    free(r);
    free(r2);
}

static void test_keyline_parse_rejects_bad_lines(void **state)
{
    struct cwt_roster_site site;
    char line[256], bad[300], err[CWT_ERRLEN];

    (void)state;
    make_keyline("site-a", line, sizeof(line));
    assert_int_equal(keyline_parse(line, &site, err, sizeof(err)), 0);
    assert_string_equal(site.key_line, line);
    assert_int_equal(keyline_parse("", &site, err, sizeof(err)), CWT_EFORMAT);
    assert_int_equal(keyline_parse("ssh-ed25519 AAAA", &site, err, sizeof(err)), CWT_EFORMAT);
    assert_int_equal(keyline_parse("cwt-site-v1 site-a", &site, err, sizeof(err)), CWT_EFORMAT);
    assert_int_equal(keyline_parse("cwt-site-v1 site-a AAAA", &site, err, sizeof(err)),
                     CWT_EFORMAT);
    assert_non_null(strstr(err, "not 64 bytes"));
    snprintf(bad, sizeof(bad), "%s extra", line);
    assert_int_equal(keyline_parse(bad, &site, err, sizeof(err)), CWT_EFORMAT);
    snprintf(bad, sizeof(bad), "cwt-site-v1 ../etc %s", strrchr(line, ' ') + 1);
    assert_int_equal(keyline_parse(bad, &site, err, sizeof(err)), CWT_EFORMAT);
}

static void test_label_index_by_name_or_number(void **state)
{
    struct cwt_recipe *r = calloc(1, sizeof(*r));
    uint32_t idx;

    (void)state;
    assert_non_null(r);
    recipe_defaults(r);
    r->classes = 2;
    r->n_class_names = 2;
    strcpy(r->class_names[0], "normal");
    strcpy(r->class_names[1], "disease");
    assert_int_equal(recipe_label_index(r, "disease", &idx), 0);
    assert_int_equal(idx, 1);
    assert_int_equal(recipe_label_index(r, "0", &idx), 0);
    assert_int_equal(idx, 0);
    assert_int_equal(recipe_label_index(r, "2", &idx), CWT_ENOENT);
    assert_int_equal(recipe_label_index(r, "cat", &idx), CWT_ENOENT);
    free(r);
}

static void test_site_init_refuses_existing_site(void **state)
{
    struct cwt_recipe *r = calloc(1, sizeof(*r));
    struct cwt_config cfg;
    struct cwt_roster *ro = calloc(1, sizeof(*ro));
    char dir[PATH_MAX], path[PATH_MAX], err[CWT_ERRLEN];
    struct stat sb;

    (void)state;
    assert_non_null(r);
    assert_non_null(ro);
    recipe_defaults(r);
    snprintf(dir, sizeof(dir), "%s/site", tmpdir);
    assert_int_equal(site_init(dir, "site-a", r, err, sizeof(err)), 0);
    assert_int_equal(site_init(dir, "site-a", r, err, sizeof(err)), CWT_EEXIST);
    snprintf(path, sizeof(path), "%s/keys", dir);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    snprintf(path, sizeof(path), "%s/cwtd.conf", dir);
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), 0);
    assert_int_equal(roster_load(cfg.roster_path, ro, err, sizeof(err)), 0);
    assert_int_equal(ro->n_sites, 0);
    assert_string_equal(ro->recipe.model, "cnn-small");
    assert_int_equal(site_init(dir, "bad/id", r, err, sizeof(err)), CWT_EINVAL);
    free(r);
    free(ro);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_site_config_defaults_and_paths),
        cmocka_unit_test(test_site_config_unknown_key_names_file_and_line),
        cmocka_unit_test(test_site_config_type_error),
        cmocka_unit_test(test_site_config_trainer_socket),
        cmocka_unit_test(test_roster_input_error_message),
        cmocka_unit_test(test_roster_round_trip_and_fingerprint),
        cmocka_unit_test(test_roster_select_metric),
        cmocka_unit_test(test_roster_init_weights),
        cmocka_unit_test(test_keyline_parse_rejects_bad_lines),
        cmocka_unit_test(test_label_index_by_name_or_number),
        cmocka_unit_test(test_site_init_refuses_existing_site),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
