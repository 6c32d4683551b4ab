/* Read buffers of PX_IOBUF_SIZE bytes, kept on a free list for reuse so connections
 * hold memory only while busy. One list per thread (a worker's, the admin server's),
 * no locking. */
#ifndef PX_IOBUF_H
#define PX_IOBUF_H

#include <stddef.h>

#define PX_IOBUF_SIZE (16 * 1024)
/* A body that filled a standard buffer on two reads in a row (a body that streams, not
 * one a little larger than a buffer) is read into one of these from then on:
 * half the reads and half the writes that forward them, and fewer, larger reads for
 * whoever receives them. (64 KiB was slower: fifty uploads' buffers no longer fit the
 * cache.) Allocated per body, never kept on the free list. */
#define PX_IOBUF_BODY (32 * 1024)
/* Enough free buffers to absorb bursts; beyond it they go back to malloc so an idle
 * process shrinks again. */
#define PX_MAX_FREE_BUFS 256
/* Bytes of buffers given back to malloc after which on_freed runs: the owner may hand
 * the memory back to the system (malloc keeps it otherwise: after a burst of 10,000
 * connections, 180 MiB stayed resident). */
#define PX_IOBUF_TRIM_BYTES (4u << 20)

typedef struct px_iobufs_s {
  char **free; /* room for PX_MAX_FREE_BUFS */
  size_t n;
  size_t freed;                            /* bytes given back to malloc since the owner last reset it */
  void (*on_freed)(struct px_iobufs_s *b); /* once freed reaches PX_IOBUF_TRIM_BYTES */
  void *data;                              /* the owner's */
} px_iobufs_t;

void px_iobufs_init(px_iobufs_t *b);
/* Frees the free list (buffers in use are their owners'). */
void px_iobufs_free(px_iobufs_t *b);

char *px_iobuf_get(px_iobufs_t *b);
/* Gives back a buffer of `cap` bytes: to the free list when it is a standard one. */
void px_iobuf_put(px_iobufs_t *b, char *buf, size_t cap);
/* Moves the first `len` bytes into a new buffer of `new_cap` bytes (a head that
 * outgrew a standard buffer) and gives the old one back. */
char *px_iobuf_grow(px_iobufs_t *b, char *buf, size_t len, size_t cap, size_t new_cap);

#endif
