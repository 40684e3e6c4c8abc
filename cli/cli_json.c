/*
 * cli_json.c - JSON output for cwtctl, on jansson. Every --json document goes through here so
 * that all of them share one set of rules (docs/json.md):
 *   - one document per command on stdout, a "schema" member naming its versioned shape;
 *   - strings are valid UTF-8 whatever the bytes behind them (a Latin-1 file name): a byte
 *     that does not start a well-formed sequence becomes U+FFFD before jansson sees it, since
 *     jansson refuses invalid UTF-8 rather than mending it;
 *   - fingerprints and hashes are lower-case hex, truth values are true/false, errors are
 *     stable names (cwt_errname), never internal negative numbers;
 *   - a failure under --json prints {"schema":"cwt.error/1","ok":false,...} on stdout with the
 *     exit code it has without --json, and the sentence on stderr as always.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/utf8.h"
#include "common/cwt.h"

/* Set by main() from --json; read by cli_error so that every failure path prints the error
 * object, including the ones reached before a command parsed its own options. */
static int json_mode;
/* A document went to stdout already: a later failure must not print a second one. */
static int json_emitted;

void cli_json_mark_emitted(void)
{
    json_emitted = 1;
}

void cli_json_set_mode(int on)
{
    json_mode = on;
}

int cli_json_mode(void)
{
    return json_mode;
}

json_t *cli_json_str(const char *s)
{
    return cwt_json_str(s);
}

json_t *cli_json_hex(const uint8_t *bytes, size_t n)
{
    char *hex;
    json_t *v;

    if (n > (SIZE_MAX - 1) / 2)
        return NULL;
    hex = malloc(2 * n + 1);
    if (hex == NULL)
        return NULL;
    cwt_hex(bytes, n, hex);
    v = json_string(hex);
    free(hex);
    return v;
}

int cli_json_set(json_t *obj, const char *key, json_t *value)
{
    /* json_object_set_new takes value (and drops it on failure), so NULL from a constructor
     * that ran out of memory is reported here once. */
    if (value == NULL || json_object_set_new(obj, key, value) != 0)
        return CWT_ENOMEM;
    return 0;
}

int cli_json_set_str(json_t *obj, const char *key, const char *s)
{
    return cli_json_set(obj, key, cli_json_str(s));
}

json_t *cli_json_doc(const char *schema, int ok)
{
    json_t *o = json_object();

    if (o == NULL)
        return NULL;
    if (cli_json_set(o, "schema", json_string(schema)) != 0 ||
        cli_json_set(o, "ok", json_boolean(ok)) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Prints doc on stdout (see cli_json_emit) and drops the reference; 0 or CLI_FAIL. */
static int print_doc(json_t *doc, int indent)
{
    size_t flags = JSON_PRESERVE_ORDER | (indent ? JSON_INDENT(2) : 0);
    char *text;
    int rc = 0;

    if (doc == NULL) {
        fputs("cwtctl: out of memory\n", stderr);
        return CLI_FAIL;
    }
    text = json_dumps(doc, flags);
    json_decref(doc);
    if (text == NULL) {
        fputs("cwtctl: cannot write the JSON output (out of memory)\n", stderr);
        return CLI_FAIL;
    }
    if (fputs(text, stdout) == EOF || fputc('\n', stdout) == EOF || fflush(stdout) != 0)
        rc = CLI_FAIL;
    free(text);
    return rc;
}

int cli_json_emit(json_t *doc, int indent)
{
    int rc = print_doc(doc, indent);

    json_emitted = 1;
    return rc;
}

int cli_json_emit_list(json_t *doc, const char *key, json_t *list, int rc)
{
    if (doc != NULL)
        rc |= cli_json_set(doc, key, list);
    else
        json_decref(list);
    if (rc != 0) {
        json_decref(doc);
        doc = NULL;
    }
    return cli_json_emit(doc, 0);
}

int cli_json_stream(json_t *doc)
{
    return print_doc(doc, 0);
}

/* Prints the error object (once per process) for a failure already told on stderr. */
static void emit_error(const char *errcode, const char *message)
{
    json_t *o;

    if (json_emitted)
        return;
    o = cli_json_doc("cwt.error/1", 0);
    if (o != NULL && (cli_json_set(o, "error", json_string(errcode)) != 0 ||
                      cli_json_set_str(o, "message", message) != 0)) {
        json_decref(o);
        o = NULL;
    }
    cli_json_emit(o, 0);
}

int cli_vfail(int code, const char *errcode, const char *fmt, va_list ap)
{
    char msg[CWT_ERRLEN * 2];

    vsnprintf(msg, sizeof(msg), fmt, ap);
    fprintf(stderr, "cwtctl: %s\n", msg);
    if (json_mode)
        emit_error(errcode, msg);
    return code;
}

int cli_fail(int code, const char *errcode, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = cli_vfail(code, errcode, fmt, ap);
    va_end(ap);
    return rc;
}

void cli_note(const char *fmt, ...)
{
    va_list ap;

    fputs("cwtctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}
