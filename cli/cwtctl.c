/*
 * cwtctl - the admin, auditor and researcher command line of cwt.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/log.h"
#include "decode/decoder.h"

struct command {
    const char *name;
    cli_cmd_fn fn;
    const char *summary;
};

static const struct command commands[] = {
    {"init", cmd_init, "create a new site: configuration, roster, store and keys"},
    {"doctor", cmd_doctor, "check the site and say how to fix what is wrong"},
    {"ingest", cmd_ingest, "load images and labels into the site store"},
    {"data", cmd_data, "show the images in the store per split and label"},
    {"key", cmd_key, "show this site's public key line"},
    {"roster", cmd_roster, "add, show and check the federation roster"},
    {"bundle", cmd_bundle, "seal, open, inspect and verify weight bundles"},
    {"chain", cmd_chain, "verify that bundles form one provenance chain"},
    {"audit", cmd_audit, "show, verify and export the audit log"},
    {"train", cmd_train, "train the site's model on local data"},
    {"eval", cmd_eval, "evaluate the model on a split"},
    {"predict", cmd_predict, "classify image files"},
    {"model", cmd_model, "export or import the model as safetensors"},
    {"simulate", cmd_simulate, "run the CWT experiment with virtual institutions"},
    {"status", cmd_control, "show what the site is doing"},
    {"start", cmd_control, "start the cycle (first site of the roster)"},
    {"pause", cmd_control, "pause training"},
    {"resume", cmd_control, "resume training"},
    {"resend", cmd_control, "re-seal the last outgoing bundle"},
    {"stop", cmd_control, "stop the daemon"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

/* Says that word is no command (or, starting with '-', no global option), with the closest
 * name when it looks like a typo of one. Returns CLI_USAGE. */
static int unknown_word(const char *word)
{
    static const char *const globals[] = {"--config", "--json", "--verbose", "--help", "--version"};
    const char *names[NCOMMANDS];
    const char *near;

    if (word[0] == '-') {
        near = cli_closest(word, globals, sizeof(globals) / sizeof(globals[0]));
        if (near != NULL)
            return cli_fail(CLI_USAGE, "bad-option", "unknown option '%s'; did you mean '%s'?",
                            word, near);
        return cli_fail(CLI_USAGE, "bad-option",
                        "unknown option '%s' before the command; run 'cwtctl --help'", word);
    }
    for (size_t i = 0; i < NCOMMANDS; i++)
        names[i] = commands[i].name;
    near = cli_closest(word, names, NCOMMANDS);
    if (near != NULL)
        return cli_fail(CLI_USAGE, "bad-command", "unknown command '%s'; did you mean '%s'?", word,
                        near);
    return cli_fail(CLI_USAGE, "bad-command", "unknown command '%s'; run 'cwtctl --help'", word);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: cwtctl [-c FILE] [--json] [-v] COMMAND [ARGS...]\n\n"
               "Commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f,
            "\nRun 'cwtctl COMMAND --help' for a command's options.\n"
            "The configuration is -c FILE, else $CWT_CONFIG, else %s.\n",
            CWT_DEFAULT_CONFIG);
}

/* Takes the global options out of argv, wherever they stand, so that every command accepts
 * them. Returns the new argc, or -1 on a usage error. */
static int take_globals(int argc, char **argv, struct cli_globals *g)
{
    int out = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            while (i < argc)
                argv[out++] = argv[i++];
            break;
        }
        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc)
                return -1;
            g->config_path = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            g->config_path = argv[i] + 9;
        } else if (strcmp(argv[i], "--json") == 0) {
            g->json = 1;
        } else if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--verbose") == 0) {
            g->verbose = 1;
        } else {
            argv[out++] = argv[i];
        }
    }
    argv[out] = NULL;
    return out;
}

int main(int argc, char **argv)
{
    struct cli_globals g = {0};

    /* A decoder child executed by ingest or predict never returns from here. */
    decoder_main(argc, argv);
    argc = take_globals(argc, argv, &g);
    if (argc < 0) {
        return cli_fail(CLI_USAGE, "bad-option", "option -c needs a file name");
    }
    cli_json_set_mode(g.json);
    g.config_path = config_default_path(g.config_path);
    g.tty = isatty(STDOUT_FILENO) && isatty(STDERR_FILENO);
    log_init("cwtctl", g.verbose);

    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return CLI_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("cwtctl %s\n", CWT_VERSION);
        return CLI_OK;
    }
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1, &g);
    return unknown_word(argv[1]);
}
