/* An intrusive circular doubly linked list (the shape libuv uses internally). */
#ifndef PX_QUEUE_H
#define PX_QUEUE_H

typedef struct px_queue_s {
  struct px_queue_s *next, *prev;
} px_queue_t;

static inline void px_queue_init(px_queue_t *q) { q->next = q->prev = q; }
static inline int px_queue_empty(const px_queue_t *q) { return q->next == q; }
static inline void px_queue_insert_tail(px_queue_t *h, px_queue_t *q) {
  q->next = h;
  q->prev = h->prev;
  h->prev->next = q;
  h->prev = q;
}
static inline void px_queue_insert_head(px_queue_t *h, px_queue_t *q) {
  q->next = h->next;
  q->prev = h;
  h->next->prev = q;
  h->next = q;
}
static inline void px_queue_remove(px_queue_t *q) {
  q->prev->next = q->next;
  q->next->prev = q->prev;
  q->next = q->prev = q;
}

#endif
