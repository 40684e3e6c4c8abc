/*
 * decoder.h - image decoding in a sandboxed child process (issue 18, M4).
 *
 * PNG, JPEG and DICOM parsers are large and see files from outside; a bug in one (DCMTK
 * recursing through thousands of nested sequences, say) must cost one rejected file, never
 * the ingest or the user's keys. The parent keeps one long-lived child per decoder (forked,
 * then executed anew where the program called decoder_main()) and hands it each image as a
 * file descriptor over a socketpair; the child reads it, decodes it, prepares it to the
 * asked shape (decode_memory() then image_prepare()) and writes the pixels back. The child
 * is confined before it receives anything (decoder_confine()): no file can be opened
 * (seccomp has no open, Landlock has no rule), no socket, no fork, no exec, no executable
 * memory, an address-space, stack and per-file CPU limit, file size 0. A crash or timeout of
 * the child is one rejected file; the next file gets a fresh child.
 */
#ifndef CWT_DECODER_H
#define CWT_DECODER_H

#include <stddef.h>
#include <stdint.h>

#include "decode/decode.h"

/* Wall-clock seconds one file may take before the child is killed; its CPU limit is the
 * same. A child ended by either is reported as "decoder timed out on NAME" and costs that
 * file only. */
#define DECODER_TIMEOUT_S 60
/* The child's address space: the largest file (DECODE_MAX_FILE), DCMTK's copy of a frame
 * (DECODE_MAX_FRAME_BYTES), the decoded and resized images, and the libraries. */
#define DECODER_MAX_AS (8ull << 30)
/* The child's stack: deep enough for any sane file, and a recursion bomb ends in SIGSEGV
 * inside the child. */
#define DECODER_MAX_STACK (8ull << 20)

struct decoder;

/* Creates a decoder. The child is started on first use (an IDX ingest never starts one).
 * Returns 0 with *out set (free with decoder_close()), or CWT_ENOMEM. */
int decoder_open(struct decoder **out);

/* Starts the child now rather than on first use: a caller about to open a GPU driver (whose
 * threads a fork would copy in an unknown state) or a store forks first. 0, or CWT_EIO with a
 * sentence in err. */
int decoder_start(struct decoder *d, char *err, size_t errlen);

/* Decodes the open file fd (read from offset 0; the caller keeps fd) and prepares it to
 * h x w x c (c 1 or 3) into out (h*w*c bytes, caller-owned). name is used in messages only.
 * Returns 0; or CWT_EFORMAT, CWT_ETOOBIG, CWT_EUNSUPPORTED, CWT_EDECODE for a file that is
 * not a usable image, including "decoder crashed on NAME (signal 11)" and "decoder timed out
 * on NAME", with a sentence in err; or CWT_EIO when no child can be started (err filled). */
int decoder_decode_fd(struct decoder *d, int fd, const char *name, uint32_t h, uint32_t w,
                      uint32_t c, uint8_t *out, char *err, size_t errlen);

/* As decoder_decode_fd() for a file already in memory (staged in a memfd for the child). */
int decoder_decode_memory(struct decoder *d, const uint8_t *buf, size_t len, const char *name,
                          uint32_t h, uint32_t w, uint32_t c, uint8_t *out, char *err,
                          size_t errlen);

/* As decoder_decode_fd() for a path (opened here, in the parent). */
int decoder_decode_file(struct decoder *d, const char *path, uint32_t h, uint32_t w, uint32_t c,
                        uint8_t *out, char *err, size_t errlen);

/* The argument with which a program that called decoder_main() is executed as a decoder
 * child. */
#define DECODER_CHILD_ARG "--decoder-child"

/* Call first thing in main(). When argv is {name, DECODER_CHILD_ARG} and descriptor 3 is a
 * socket, this process is a decoder child that decoder_start() executed: it confines itself
 * and serves on descriptor 3, and never returns. Otherwise it records that this program may
 * be executed anew for each child (an address space of its own rather than a copy of the
 * parent's) and returns. Programs that do not call it (tests) get forked children. */
void decoder_main(int argc, char **argv);

/* For tests only: decoders opened from now on in this process take timeout_s seconds per
 * file (wall clock in the parent, CPU time in the child), only ever lower than
 * DECODER_TIMEOUT_S (0 or more restores it); and when spin_marker is not NULL, their forked
 * children spin instead of decoding an image whose first bytes are spin_marker, so that the
 * timeout can be tried without an input that really is slow. Nothing outside the process can
 * set either: cwtctl never calls it, and a child executed anew (decoder_main()) starts from
 * the defaults. spin_marker must outlive the decoders. */
void decoder_test_limits(unsigned timeout_s, const char *spin_marker);

/* Stops the child (closing its socket ends it) and frees d. NULL is fine. */
void decoder_close(struct decoder *d);

/* The confinement the child applies to itself before it reads any file: DCMTK's set-up done
 * (its dictionary is read from disk), then resource limits, Landlock without rules and the
 * decoder's seccomp list. Public so that tests can check what a confined child may do.
 * Returns 0, or an error with a sentence in err. */
int decoder_confine(char *err, size_t errlen);

#endif
