/* COpenSSL: the system OpenSSL 3 headers Sigil uses, plus one-line static inline wrappers for the
 * macros Swift cannot import (sk_TYPE_*, OPENSSL_free, BIO_get_mem_data, ...). Deprecated 1.1 APIs
 * are hidden so that only EVP-era calls compile. Keep every wrapper a one-liner: logic goes in Swift. */
#ifndef SIGIL_COPENSSL_SHIM_H
#define SIGIL_COPENSSL_SHIM_H
#ifndef OPENSSL_API_COMPAT
#define OPENSSL_API_COMPAT 30000
#endif
#ifndef OPENSSL_NO_DEPRECATED
#define OPENSSL_NO_DEPRECATED 1
#endif
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/x509_vfy.h>

static inline void copenssl_free(void *ptr) { OPENSSL_free(ptr); }
static inline long copenssl_BIO_get_mem_data(BIO *bio, char **out) { return BIO_get_mem_data(bio, out); }

static inline STACK_OF(GENERAL_NAME) *copenssl_sk_GENERAL_NAME_new_null(void) { return sk_GENERAL_NAME_new_null(); }
static inline int copenssl_sk_GENERAL_NAME_push(STACK_OF(GENERAL_NAME) *sk, GENERAL_NAME *gn) { return sk_GENERAL_NAME_push(sk, gn); }
static inline int copenssl_sk_GENERAL_NAME_num(const STACK_OF(GENERAL_NAME) *sk) { return sk_GENERAL_NAME_num(sk); }
static inline GENERAL_NAME *copenssl_sk_GENERAL_NAME_value(const STACK_OF(GENERAL_NAME) *sk, int i) { return sk_GENERAL_NAME_value(sk, i); }
static inline void copenssl_sk_GENERAL_NAME_pop_free(STACK_OF(GENERAL_NAME) *sk) { sk_GENERAL_NAME_pop_free(sk, GENERAL_NAME_free); }

static inline STACK_OF(ASN1_OBJECT) *copenssl_sk_ASN1_OBJECT_new_null(void) { return sk_ASN1_OBJECT_new_null(); }
static inline int copenssl_sk_ASN1_OBJECT_push(STACK_OF(ASN1_OBJECT) *sk, ASN1_OBJECT *o) { return sk_ASN1_OBJECT_push(sk, o); }
static inline int copenssl_sk_ASN1_OBJECT_num(const STACK_OF(ASN1_OBJECT) *sk) { return sk_ASN1_OBJECT_num(sk); }
static inline ASN1_OBJECT *copenssl_sk_ASN1_OBJECT_value(const STACK_OF(ASN1_OBJECT) *sk, int i) { return sk_ASN1_OBJECT_value(sk, i); }
static inline void copenssl_sk_ASN1_OBJECT_pop_free(STACK_OF(ASN1_OBJECT) *sk) { sk_ASN1_OBJECT_pop_free(sk, ASN1_OBJECT_free); }

static inline STACK_OF(X509_EXTENSION) *copenssl_sk_X509_EXTENSION_new_null(void) { return sk_X509_EXTENSION_new_null(); }
static inline int copenssl_sk_X509_EXTENSION_push(STACK_OF(X509_EXTENSION) *sk, X509_EXTENSION *e) { return sk_X509_EXTENSION_push(sk, e); }
static inline int copenssl_sk_X509_EXTENSION_num(const STACK_OF(X509_EXTENSION) *sk) { return sk_X509_EXTENSION_num(sk); }
static inline X509_EXTENSION *copenssl_sk_X509_EXTENSION_value(const STACK_OF(X509_EXTENSION) *sk, int i) { return sk_X509_EXTENSION_value(sk, i); }
static inline void copenssl_sk_X509_EXTENSION_pop_free(STACK_OF(X509_EXTENSION) *sk) { sk_X509_EXTENSION_pop_free(sk, X509_EXTENSION_free); }

static inline STACK_OF(X509) *copenssl_sk_X509_new_null(void) { return sk_X509_new_null(); }
static inline int copenssl_sk_X509_push(STACK_OF(X509) *sk, X509 *x) { return sk_X509_push(sk, x); }
static inline void copenssl_sk_X509_free(STACK_OF(X509) *sk) { sk_X509_free(sk); }

static inline long copenssl_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) { return SSL_CTX_set_min_proto_version(ctx, version); }
static inline long copenssl_SSL_set_tlsext_host_name(SSL *ssl, const char *name) { return SSL_set_tlsext_host_name(ssl, name); }

static inline unsigned long copenssl_XN_FLAG_RFC2253(void) { return XN_FLAG_RFC2253; }
static inline int copenssl_EVP_CTRL_GCM_GET_TAG(void) { return EVP_CTRL_GCM_GET_TAG; }
static inline int copenssl_EVP_CTRL_GCM_SET_TAG(void) { return EVP_CTRL_GCM_SET_TAG; }

/* X509_set_pubkey re-encodes the key through OSSL_ENCODER/OSSL_DECODER on OpenSSL 3.0 (about half the
 * cost of an issuance); copying the CSR's SubjectPublicKeyInfo fields is byte-identical and 6x cheaper. */
static inline int copenssl_X509_copy_pubkey_from_req(X509 *x, X509_REQ *req) {
    ASN1_OBJECT *algorithm = NULL; const unsigned char *bits = NULL; int length = 0; X509_ALGOR *alg = NULL;
    const ASN1_OBJECT *oid = NULL; int ptype = 0; const void *pval = NULL; void *param = NULL; unsigned char *copy = NULL;
    X509_PUBKEY *source = X509_REQ_get_X509_PUBKEY(req);
    if (source == NULL || X509_PUBKEY_get0_param(&algorithm, &bits, &length, &alg, source) != 1) return 0;
    X509_ALGOR_get0(&oid, &ptype, &pval, alg);
    if (ptype == V_ASN1_OBJECT) param = OBJ_dup((const ASN1_OBJECT *)pval);
    else if (ptype == V_ASN1_SEQUENCE || ptype == V_ASN1_OCTET_STRING) param = ASN1_STRING_dup((const ASN1_STRING *)pval);
    else if (ptype != V_ASN1_UNDEF && ptype != V_ASN1_NULL) return 0;
    copy = OPENSSL_memdup(bits, (size_t)length);
    if (copy == NULL && length > 0) { return 0; }
    if (X509_PUBKEY_set0_param(X509_get_X509_PUBKEY(x), OBJ_dup(oid), ptype, param, copy, length) != 1) {
        OPENSSL_free(copy); return 0;
    }
    return 1;
}
/* An EC public key from a named curve and an encoded point. On OpenSSL 3.0 decoding a SubjectPublicKeyInfo
 * builds an OSSL_DECODER context per key (about 80 us, more than the ECDSA verify); EVP_PKEY_fromdata takes
 * about 15 us and runs the same on-curve check (EC_POINT_oct2point). NULL on any failure. */
static inline EVP_PKEY *copenssl_EC_public_key(int curve_nid, const unsigned char *point, size_t length) {
    const char *group = OBJ_nid2sn(curve_nid); EVP_PKEY_CTX *ctx = NULL; EVP_PKEY *key = NULL; OSSL_PARAM params[3];
    if (curve_nid == NID_undef || group == NULL || (ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL) return NULL;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)group, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)point, length);
    params[2] = OSSL_PARAM_construct_end();
    if (EVP_PKEY_fromdata_init(ctx) != 1 || EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) != 1) key = NULL;
    EVP_PKEY_CTX_free(ctx);
    return key;
}
/* A keyed HMAC-SHA256 context, to be duplicated per message (HMAC() fetches the MAC and the digest by name
 * on every call). NULL on failure. */
static inline EVP_MAC_CTX *copenssl_HMAC_SHA256_context(EVP_MAC *mac, const unsigned char *key, size_t length) {
    OSSL_PARAM params[2];
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    if (ctx != NULL && EVP_MAC_init(ctx, key, length, params) != 1) { EVP_MAC_CTX_free(ctx); ctx = NULL; }
    return ctx;
}
#endif
