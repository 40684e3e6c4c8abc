/*
 * utf8.h - UTF-8 for text that leaves cwt as JSON (cwtctl's documents, cwtd's status): shared
 * by both programs, hence here and not in cli/.
 */
#ifndef CWT_UTF8_H
#define CWT_UTF8_H

#include <stddef.h>

#include <jansson.h>

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF), or 0 when s does not start one. s is NUL-terminated. */
size_t cwt_utf8_len(const unsigned char *s);

/* A malloc'd copy of the NUL-terminated s with every byte that starts no well-formed sequence
 * replaced by U+FFFD; NULL when out of memory. The caller frees it. */
char *cwt_utf8_clean(const char *s);

/* A new jansson string of s cleaned as cwt_utf8_clean does (jansson refuses invalid UTF-8
 * rather than mending it), or json_null() for a NULL s; NULL when out of memory. The caller
 * owns the reference. */
json_t *cwt_json_str(const char *s);

#endif
