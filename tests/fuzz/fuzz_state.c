/*
 * fuzz_state.c - libFuzzer harness for the daemon's saved-state codec and the patience
 * history parser (cycle/cycle.h, issue 18 H1): cycle_state_decode on the input; a state it
 * accepts must encode again, and that text must decode to a state that encodes to the same
 * text (the codec is a fixed point after one round). cycle_history_parse on the input as a C
 * string: an accepted history formats and parses back to the same numbers. Neither may
 * accept a control character. cycle_normsum_parse (a peer's "cwt.normsum", issue 20) the same
 * way: an accepted text has no control character and formats back to the identical text.
 */
#include <stdlib.h>
#include <string.h>

#include "common/cwt.h"
#include "cycle/cycle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int has_control(const char *s, size_t n, int newline_ok)
{
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] < 0x20 && !(newline_ok && s[i] == '\n')) || s[i] == 0x7f)
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct cycle_state cs, again;
    static char text[CWTD_STATE_MAX], text2[CWTD_STATE_MAX], in[CWTD_STATE_MAX];
    struct cycle_history h, h2;
    char err[CWT_ERRLEN], hist[CWTD_HISTORY_MAX + 1];
    int n, n2;

    if (size >= sizeof(in))
        return 0;
    memcpy(in, data, size);
    in[size] = '\0';
    if (cycle_state_decode(in, size, &cs, err, sizeof(err)) == 0) {
        if (has_control(in, size, 1))
            abort();
        n = cycle_state_encode(&cs, text, sizeof(text));
        if (n < 0)
            abort(); /* the decoder accepted what the encoder cannot write */
        if (cycle_state_decode(text, (size_t)n, &again, err, sizeof(err)) != 0)
            abort();
        n2 = cycle_state_encode(&again, text2, sizeof(text2));
        if (n2 != n || memcmp(text, text2, (size_t)n) != 0)
            abort();
    }
    if (cycle_history_parse(in, &h, err, sizeof(err)) == 0) {
        if (has_control(in, strlen(in), 0))
            abort();
        if (cycle_history_format(&h, hist, sizeof(hist)) != 0 ||
            cycle_history_parse(hist, &h2, err, sizeof(err)) != 0 || h2.cur != h.cur ||
            h2.n != h.n || h2.bestc != h.bestc || h2.sum != h.sum || h2.best != h.best)
            abort();
    }
    {
        struct cycle_normsum ns, ns2;
        char nst[CWTD_NORMSUM_MAX + 1];
        if (cycle_normsum_parse(in, 16, &ns, err, sizeof(err)) == 0 && ns.sites > 0) {
            if (has_control(in, strlen(in), 0))
                abort();
            if (cycle_normsum_format(&ns, nst, sizeof(nst)) != 0 ||
                cycle_normsum_parse(nst, 16, &ns2, err, sizeof(err)) != 0 ||
                memcmp(&ns, &ns2, sizeof(ns)) != 0 || strcmp(nst, in) != 0)
                abort();
        }
    }
    return 0;
}
