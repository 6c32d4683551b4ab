#include "app.h"

#include <llhttp.h>
#include <string.h>

#include "json.h"
#include "log.h"

static void json_error(px_hres_t *res, int status, const char *msg) {
  res->status = status;
  px_buf_append_cstr(&res->headers, "Content-Type: application/json\r\n");
  px_buf_append_cstr(&res->body, "{\"error\": ");
  px_buf_json_str(&res->body, msg, strlen(msg));
  px_buf_append_cstr(&res->body, "}");
}

static void method_not_allowed(px_hres_t *res, const char *allow) {
  json_error(res, 405, "method not allowed");
  px_hres_header(res, "Allow", allow);
}

static int is_get(const px_hreq_t *req) { return req->method == HTTP_GET || req->method == HTTP_HEAD; }

static void link_json(const shr_app_t *app, px_hres_t *res, const char *code, const char *url,
                      size_t url_len) {
  px_buf_t *b = &res->body;
  px_buf_append_cstr(b, "{\"code\": \"");
  px_buf_append(b, code, SHR_CODE_LEN);
  px_buf_append_cstr(b, "\", \"short_url\": ");
  /* base_url came from the command line; escape it like any other string. */
  px_buf_append(b, "\"", 1);
  px_buf_json_escape(b, app->base_url, strlen(app->base_url));
  px_buf_append(b, "/", 1);
  px_buf_append(b, code, SHR_CODE_LEN);
  px_buf_append_cstr(b, "\", \"url\": ");
  px_buf_json_str(b, url, url_len);
  px_buf_append(b, "}", 1);
  px_buf_append_cstr(&res->headers, "Content-Type: application/json\r\n");
}

/* Content-Type is not checked: the body must be JSON whatever the client declares,
 * which keeps `curl -d` (form type by default) working. */
static void create_link(const shr_app_t *app, const px_hreq_t *req, px_hres_t *res) {
  if (req->body.n == 0) {
    json_error(res, 400, "request body must be a JSON object like {\"url\": \"https://...\"}");
    return;
  }
  char jerr[128];
  px_json_t *doc = px_json_parse(req->body.p, req->body.n, jerr, sizeof(jerr));
  if (doc == NULL) {
    char msg[192];
    snprintf(msg, sizeof(msg), "request body is not valid JSON (%s)", jerr);
    json_error(res, 400, msg);
    return;
  }
  if (px_json_type(doc) != PX_JSON_OBJECT) {
    json_error(res, 400, "request body must be a JSON object like {\"url\": \"https://...\"}");
    goto out;
  }
  const px_json_t *u = px_json_get(doc, "url");
  if (u == NULL) {
    json_error(res, 400, "missing \"url\"");
    goto out;
  }
  size_t n;
  const char *url = px_json_str(u, &n);
  if (url == NULL) {
    json_error(res, 400, "\"url\" must be a string");
    goto out;
  }
  const char *why;
  if (shr_url_check(url, n, &why) != 0) {
    json_error(res, 400, why);
    goto out;
  }
  char code[SHR_CODE_LEN + 1];
  if (shr_store_create(app->store, url, n, code) != 0) {
    px_error("create link: %s", shr_store_error(app->store));
    json_error(res, 503, "storage unavailable");
    goto out;
  }
  res->status = 201;
  char loc[32];
  snprintf(loc, sizeof(loc), "/api/links/%s", code);
  px_hres_header(res, "Location", loc);
  link_json(app, res, code, url, n);
out:
  px_json_free(doc);
}

/* Looks code up; on success the URL is appended to `url` and 1 is returned,
 * otherwise the error response is already set. */
static int lookup(const shr_app_t *app, px_str_t code, px_hres_t *res, px_buf_t *url) {
  int rc = shr_code_valid(code.p, code.n) ? shr_store_lookup(app->store, code.p, code.n, url) : 0;
  if (rc == 1) return 1;
  if (rc == 0) {
    json_error(res, 404, "no such link");
  } else {
    px_error("lookup: %s", shr_store_error(app->store));
    json_error(res, 503, "storage unavailable");
  }
  return 0;
}

void shr_app_handle(void *data, const px_hreq_t *req, px_hres_t *res) {
  const shr_app_t *app = data;
  px_str_t path = req->path;
  static const char api[] = "/api/links";

  if (px_str_eq(path, PX_STR("/healthz"))) {
    if (!is_get(req)) {
      method_not_allowed(res, "GET, HEAD");
      return;
    }
    static const char ok[] = "{\"status\": \"ok\"}";
    px_hres_json(res, 200, ok, sizeof(ok) - 1);
    return;
  }
  if (px_str_eq(path, PX_STR(api)) || px_str_eq(path, PX_STR("/api/links/"))) {
    if (req->method != HTTP_POST) {
      method_not_allowed(res, "POST");
      return;
    }
    create_link(app, req, res);
    return;
  }
  if (path.n > sizeof(api) && memcmp(path.p, "/api/links/", sizeof(api)) == 0) {
    px_str_t code = {path.p + sizeof(api), path.n - sizeof(api)};
    if (!shr_code_valid(code.p, code.n)) {
      json_error(res, 404, "no such link");
      return;
    }
    if (!is_get(req)) {
      method_not_allowed(res, "GET, HEAD");
      return;
    }
    px_buf_t url = {0};
    if (lookup(app, code, res, &url)) {
      res->status = 200;
      link_json(app, res, code.p, url.data, url.len);
    }
    px_buf_free(&url);
    return;
  }
  if (path.n == 1 + SHR_CODE_LEN && path.p[0] == '/' && shr_code_valid(path.p + 1, SHR_CODE_LEN)) {
    if (!is_get(req)) {
      method_not_allowed(res, "GET, HEAD");
      return;
    }
    /* The redirect is the hot path: the URL goes straight into the header block. */
    px_buf_t *h = &res->headers;
    size_t mark = h->len;
    px_buf_append(h, "Location: ", 10);
    int rc = shr_store_lookup(app->store, path.p + 1, SHR_CODE_LEN, h);
    if (rc == 1) {
      px_buf_append(h, "\r\n", 2);
      res->status = 302;
      return;
    }
    h->len = mark;
    if (rc == 0) {
      json_error(res, 404, "no such link");
    } else {
      px_error("lookup: %s", shr_store_error(app->store));
      json_error(res, 503, "storage unavailable");
    }
    return;
  }
  json_error(res, 404, "not found");
}
