/*
 * originalDst(fd, family) -> { address, port }
 *
 * Why this exists: a connection captured by a netfilter REDIRECT or DNAT rule arrives at the proxy's listener
 * with its destination rewritten, and the destination the client asked for is known only to conntrack. Linux
 * hands it out through getsockopt(SO_ORIGINAL_DST), which Node does not expose (net.Socket has no getsockopt),
 * so a transparent proxy written in Node needs these few lines of C. Plain N-API (node_api.h) keeps the addon
 * ABI-stable across Node versions and adds no npm dependency.
 *
 * The kernel side is getorigdst() in net/netfilter/nf_conntrack_proto.c: it looks the socket's 4-tuple up in
 * conntrack and fails with ENOENT when there is no entry (no nat/conntrack rule saw the connection).
 */
#include <errno.h>
#include <string.h>
#include <stdio.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <node_api.h>
#include <uv.h>

/* From <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h>; defined here because those headers
 * clash with <netinet/in.h> on some libcs. Both are 80 in the kernel's uapi. */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

/* Throws an Error whose `code` is the errno name (via libuv, which Node exports to addons) and whose message
 * names the call that failed. */
static void throw_errno(napi_env env, int err, const char *what, int fd) {
  char code[64];
  char message[256];
  napi_value js_code, js_message, error;
  uv_err_name_r(-err, code, sizeof code);
  snprintf(message, sizeof message, "%s on fd %d: %s (%s)", what, fd, strerror(err), code);
  if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &js_code) != napi_ok) return;
  if (napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &js_message) != napi_ok) return;
  if (napi_create_error(env, js_code, js_message, &error) != napi_ok) return;
  napi_throw(env, error);
}

static napi_value original_dst(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd, family;
  char address[INET6_ADDRSTRLEN];
  uint16_t port;
  napi_value result, js_address, js_port;

  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int32(env, argv[1], &family) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "originalDst(fd, family): fd and family must be numbers");
    return NULL;
  }
  if (family == 4) {
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    memset(&sa, 0, sizeof sa);
    if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &sa, &len) != 0) {
      throw_errno(env, errno, "getsockopt(SOL_IP, SO_ORIGINAL_DST)", fd);
      return NULL;
    }
    inet_ntop(AF_INET, &sa.sin_addr, address, sizeof address);
    port = ntohs(sa.sin_port);
  } else if (family == 6) {
    struct sockaddr_in6 sa;
    socklen_t len = sizeof sa;
    memset(&sa, 0, sizeof sa);
    if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &sa, &len) != 0) {
      throw_errno(env, errno, "getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST)", fd);
      return NULL;
    }
    inet_ntop(AF_INET6, &sa.sin6_addr, address, sizeof address);
    port = ntohs(sa.sin6_port);
  } else {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "originalDst(fd, family): family must be 4 or 6");
    return NULL;
  }

  if (napi_create_object(env, &result) != napi_ok ||
      napi_create_string_utf8(env, address, NAPI_AUTO_LENGTH, &js_address) != napi_ok ||
      napi_create_uint32(env, port, &js_port) != napi_ok ||
      napi_set_named_property(env, result, "address", js_address) != napi_ok ||
      napi_set_named_property(env, result, "port", js_port) != napi_ok) {
    return NULL;
  }
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "originalDst", NAPI_AUTO_LENGTH, original_dst, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "originalDst", fn) != napi_ok) return NULL;
  return exports;
}
