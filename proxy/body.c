#include "body.h"

/* Where the chunked reader is. Each state names what the next byte may be. */
enum {
  S_SIZE0 = 0,      /* the first hex digit of a chunk size (px_body_reader_init's 0) */
  S_SIZE,           /* more hex digits, BWS, ";" or CR */
  S_EXT_BWS,        /* BWS after the size or a value: only ";" may follow */
  S_EXT_NAME0,      /* after ";": BWS, then the first byte of a name */
  S_EXT_NAME,       /* in a name: more, BWS, "=", ";" or CR */
  S_EXT_AFTER_NAME, /* BWS after a name: "=" or ";" */
  S_EXT_VALUE0,     /* after "=": BWS, then a token or a quoted-string */
  S_EXT_TOKEN,      /* in a token value: more, BWS, ";" or CR */
  S_EXT_QUOTED,     /* in a quoted-string */
  S_EXT_QPAIR,      /* after a backslash in a quoted-string */
  S_EXT_QUOTED_END, /* after a quoted-string: BWS, ";" or CR */
  S_SIZE_LF,        /* the LF ending a chunk line */
  S_DATA,           /* chunk data */
  S_DATA_CR,        /* the CR after chunk data */
  S_DATA_LF,        /* the LF after chunk data */
  S_TRAILER,        /* the start of a trailer line, or the CR of the final CRLF */
  S_TRAILER_NAME,   /* in a trailer field name */
  S_TRAILER_VALUE,  /* in a trailer field value */
  S_TRAILER_LF,     /* the LF ending a trailer line */
  S_FINAL_LF,       /* the LF of the final CRLF */
};

/* Byte classes (RFC 9110 §5.6.2, §5.5, §5.6.4). */
enum { C_TCHAR = 1, C_HEX = 2, C_FIELD = 4 /* field-value: VCHAR, obs-text, SP, HTAB */, C_QDTEXT = 8 };
#define TQF (C_TCHAR | C_QDTEXT | C_FIELD)
static const unsigned char cls[256] = {
    ['\t'] = C_FIELD | C_QDTEXT,
    [' '] = C_FIELD | C_QDTEXT,
    ['!'] = TQF,
    ['"'] = C_FIELD,
    ['#' ... '\''] = TQF,
    ['(' ... ')'] = C_QDTEXT | C_FIELD,
    ['*' ... '+'] = TQF,
    [','] = C_QDTEXT | C_FIELD,
    ['-' ... '.'] = TQF,
    ['/'] = C_QDTEXT | C_FIELD,
    ['0' ... '9'] = TQF | C_HEX,
    [':' ... '@'] = C_QDTEXT | C_FIELD,
    ['A' ... 'F'] = TQF | C_HEX,
    ['G' ... 'Z'] = TQF,
    ['['] = C_QDTEXT | C_FIELD,
    ['\\'] = C_FIELD,
    [']'] = C_QDTEXT | C_FIELD,
    ['^' ... '`'] = TQF,
    ['a' ... 'f'] = TQF | C_HEX,
    ['g' ... 'z'] = TQF,
    ['{'] = C_QDTEXT | C_FIELD,
    ['|'] = TQF,
    ['}'] = C_QDTEXT | C_FIELD,
    ['~'] = TQF,
    [0x80 ... 0xff] = C_QDTEXT | C_FIELD,
};
#undef TQF

static px_br_result_t fail(px_body_reader_t *r, const char *why) {
  r->err = why;
  return PX_BR_ERROR;
}

static int hexval(unsigned char ch) { return ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10; }

/* The framing bytes of a chunked body, up to the next chunk data or the end. */
static px_br_result_t chunked_framing(px_body_reader_t *r, const char **pp, const char *end) {
  const unsigned char *p = (const unsigned char *)*pp, *e = (const unsigned char *)end;
  px_br_result_t res = PX_BR_MORE;
  for (; p < e; p++) {
    unsigned char ch = *p;
    if (r->state < S_SIZE_LF && ++r->line > PX_BODY_CHUNK_LINE_MAX) {
      res = fail(r, "a chunk line is too long");
      break;
    }
    if (r->state >= S_TRAILER && ++r->line > PX_BODY_TRAILERS_MAX) {
      res = fail(r, "the trailer section is too large");
      break;
    }
    switch (r->state) {
    case S_SIZE0:
      if (!(cls[ch] & C_HEX)) {
        res = fail(r, "a chunk size must be hex digits");
        goto out;
      }
      r->left = (uint64_t)hexval(ch);
      r->state = S_SIZE;
      break;
    case S_SIZE:
      if (cls[ch] & C_HEX) {
        if (r->left > (INT64_MAX >> 4)) { /* the size must fit a signed 64-bit integer */
          res = fail(r, "a chunk size is too large");
          goto out;
        }
        r->left = r->left << 4 | (uint64_t)hexval(ch);
      } else if (ch == ' ' || ch == '\t') {
        r->state = S_EXT_BWS;
      } else if (ch == ';') {
        r->state = S_EXT_NAME0;
      } else if (ch == '\r') {
        r->state = S_SIZE_LF;
      } else {
        res = fail(r, "a chunk size must be hex digits");
        goto out;
      }
      break;
    case S_EXT_BWS:
      if (ch == ';') {
        r->state = S_EXT_NAME0;
      } else if (ch != ' ' && ch != '\t') {
        res = fail(r, "whitespace in a chunk line may only come before ';'");
        goto out;
      }
      break;
    case S_EXT_NAME0:
      if (cls[ch] & C_TCHAR) {
        r->state = S_EXT_NAME;
      } else if (ch != ' ' && ch != '\t') {
        res = fail(r, "a chunk extension needs a name");
        goto out;
      }
      break;
    case S_EXT_NAME:
    case S_EXT_AFTER_NAME:
      if ((cls[ch] & C_TCHAR) && r->state == S_EXT_NAME) {
        break;
      } else if (ch == ' ' || ch == '\t') {
        r->state = S_EXT_AFTER_NAME;
      } else if (ch == '=') {
        r->state = S_EXT_VALUE0;
      } else if (ch == ';') {
        r->state = S_EXT_NAME0;
      } else if (ch == '\r' && r->state == S_EXT_NAME) {
        r->state = S_SIZE_LF;
      } else {
        res = fail(r, "a malformed chunk extension");
        goto out;
      }
      break;
    case S_EXT_VALUE0:
      if (cls[ch] & C_TCHAR) {
        r->state = S_EXT_TOKEN;
      } else if (ch == '"') {
        r->state = S_EXT_QUOTED;
      } else if (ch != ' ' && ch != '\t') {
        res = fail(r, "a chunk extension has an empty or malformed value");
        goto out;
      }
      break;
    case S_EXT_TOKEN:
      if (cls[ch] & C_TCHAR) {
        break;
      } else if (ch == ' ' || ch == '\t') {
        r->state = S_EXT_BWS;
      } else if (ch == ';') {
        r->state = S_EXT_NAME0;
      } else if (ch == '\r') {
        r->state = S_SIZE_LF;
      } else {
        res = fail(r, "a malformed chunk extension value");
        goto out;
      }
      break;
    case S_EXT_QUOTED:
      if (ch == '"') {
        r->state = S_EXT_QUOTED_END;
      } else if (ch == '\\') {
        r->state = S_EXT_QPAIR;
      } else if (!(cls[ch] & C_QDTEXT)) {
        res = fail(r, "a malformed quoted chunk extension value");
        goto out;
      }
      break;
    case S_EXT_QUOTED_END:
      if (ch == '\r') {
        r->state = S_SIZE_LF;
      } else if (ch == ';') {
        r->state = S_EXT_NAME0;
      } else if (ch == ' ' || ch == '\t') {
        r->state = S_EXT_BWS;
      } else {
        res = fail(r, "a malformed chunk extension");
        goto out;
      }
      break;
    case S_EXT_QPAIR:
      if (!(cls[ch] & C_FIELD)) { /* HTAB / SP / VCHAR / obs-text */
        res = fail(r, "a malformed quoted chunk extension value");
        goto out;
      }
      r->state = S_EXT_QUOTED;
      break;
    case S_SIZE_LF:
      if (ch != '\n') {
        res = fail(r, "a chunk line must end with CRLF");
        goto out;
      }
      r->line = 0;
      if (r->left == 0) {
        r->state = S_TRAILER;
      } else {
        r->state = S_DATA;
        p++;
        goto out; /* chunk data follows: the caller hands it out */
      }
      break;
    case S_DATA_CR:
      if (ch != '\r') {
        res = fail(r, "chunk data must be followed by CRLF");
        goto out;
      }
      r->state = S_DATA_LF;
      break;
    case S_DATA_LF:
      if (ch != '\n') {
        res = fail(r, "chunk data must be followed by CRLF");
        goto out;
      }
      r->state = S_SIZE0;
      break;
    case S_TRAILER:
      if (ch == '\r') {
        r->state = S_FINAL_LF;
      } else if (cls[ch] & C_TCHAR) {
        r->state = S_TRAILER_NAME;
      } else if (ch == ' ' || ch == '\t') {
        res = fail(r, "obs-folded trailer lines are not accepted");
        goto out;
      } else {
        res = fail(r, "a malformed trailer field");
        goto out;
      }
      break;
    case S_TRAILER_NAME:
      if (ch == ':') {
        r->state = S_TRAILER_VALUE;
      } else if (!(cls[ch] & C_TCHAR)) {
        res = fail(r, "a malformed trailer field name");
        goto out;
      }
      break;
    case S_TRAILER_VALUE:
      if (ch == '\r') {
        r->state = S_TRAILER_LF;
      } else if (!(cls[ch] & C_FIELD)) {
        res = fail(r, "a trailer field value holds a control character");
        goto out;
      }
      break;
    case S_TRAILER_LF:
      if (ch != '\n') {
        res = fail(r, "a trailer line must end with CRLF");
        goto out;
      }
      r->state = S_TRAILER;
      break;
    case S_FINAL_LF:
      if (ch != '\n') {
        res = fail(r, "a chunked body must end with CRLF");
        goto out;
      }
      r->done = 1;
      p++;
      res = PX_BR_END;
      goto out;
    }
  }
out:
  *pp = (const char *)p;
  return res;
}

px_br_result_t px_body_read(px_body_reader_t *r, const char **p, const char *end, px_str_t *data) {
  if (r->err) return PX_BR_ERROR;
  if (r->done) return PX_BR_END;
  switch ((px_body_mode_t)r->mode) {
  case PX_BODY_LENGTH: {
    size_t n = (size_t)PX_MIN((uint64_t)(end - *p), r->left);
    if (n == 0) return PX_BR_MORE;
    *data = (px_str_t){*p, n};
    *p += n;
    r->left -= n;
    if (r->left == 0) r->done = 1;
    return PX_BR_DATA; /* the next call says PX_BR_END */
  }
  case PX_BODY_CLOSE: {
    size_t n = (size_t)(end - *p);
    if (n == 0) return PX_BR_MORE;
    *data = (px_str_t){*p, n};
    *p = end;
    return PX_BR_DATA;
  }
  case PX_BODY_CHUNKED:
    if (r->state == S_DATA) {
      size_t n = (size_t)PX_MIN((uint64_t)(end - *p), r->left);
      if (n == 0) return PX_BR_MORE;
      *data = (px_str_t){*p, n};
      *p += n;
      r->left -= n;
      if (r->left == 0) r->state = S_DATA_CR;
      return PX_BR_DATA;
    }
    {
      px_br_result_t res = chunked_framing(r, p, end);
      if (res != PX_BR_MORE || r->state != S_DATA) return res;
      return px_body_read(r, p, end, data); /* framing done: the chunk's data */
    }
  case PX_BODY_NONE: break;
  }
  return PX_BR_END;
}

px_br_result_t px_body_eof(px_body_reader_t *r) {
  if (r->err) return PX_BR_ERROR;
  if (r->done) return PX_BR_END;
  if (r->mode == PX_BODY_CLOSE) {
    r->done = 1;
    return PX_BR_END;
  }
  return fail(r, "the body was cut short");
}
