/*
 * A PKCS#11 library that forwards every call to the real one (BYOK_P11_SHIM_TARGET, e.g.
 * libsofthsm2.so) and, on request, ends the caller's HSM sessions under it: the fault suite's
 * way to make the worker's session or login invalid mid-run, from outside the worker. The
 * benchmark uses it to add a network HSM's latency (BYOK_P11_LATENCY_US, below).
 *
 * The file named by BYOK_P11_FAULT_FILE holds "<mode> <call>", e.g. "close-sessions C_WrapKey".
 * When it exists at the start of <call> (C_GetSessionInfo, C_FindObjectsInit or C_WrapKey), the
 * shim deletes it, then, on the real library, either closes all sessions of the slot
 * ("close-sessions") or logs the user out ("logout"), and forwards the call, which the real
 * library then answers as it would after such a loss. Each injected fault appends a line to
 * BYOK_P11_FAULT_FILE.log.
 *
 * It also counts the session objects (CKA_TOKEN false: the imported wrapping public key, the
 * ephemeral AES key) that the process created and that are still alive, and writes the count to
 * BYOK_P11_FAULT_FILE.session-objects.<pid> after every change: another process cannot see them.
 *
 * BYOK_P11_LATENCY_US, when set, delays every call the activities make per key (open, login,
 * find, attribute reads, generate, create, wrap, encrypt, destroy) by that many microseconds
 * before forwarding it: a network HSM's round trip, for the benchmark. The delay holds no lock,
 * so calls on different sessions wait in parallel, as they would on the network.
 *
 * Built by buildPkcs11Shim (scripts/pkcs11-shim.ts): cc -shared -fPIC -I node_modules/pkcs11js/includes ... -ldl -lpthread
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pkcs11/pkcs11.h>

static CK_FUNCTION_LIST real;
static CK_FUNCTION_LIST shim;

#define MAX_LIVE 4096
static struct { CK_SESSION_HANDLE session; CK_OBJECT_HANDLE object; } live[MAX_LIVE];
static int live_count;
/* The session pool calls in from several threads. */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static useconds_t latency_us;

static void round_trip(void) {
  if (latency_us) usleep(latency_us);
}

static void write_live(void) {
  const char *file = getenv("BYOK_P11_FAULT_FILE");
  char path[4096];
  FILE *f;
  if (!file) return;
  snprintf(path, sizeof path, "%s.session-objects.%d", file, (int)getpid());
  if ((f = fopen(path, "w"))) {
    fprintf(f, "%d\n", live_count);
    fclose(f);
  }
}

static int is_session_object(CK_ATTRIBUTE_PTR t, CK_ULONG n) {
  for (CK_ULONG i = 0; i < n; i++)
    if (t[i].type == CKA_TOKEN && t[i].ulValueLen == sizeof(CK_BBOOL)) return !*(CK_BBOOL *)t[i].pValue;
  return 1; /* CKA_TOKEN defaults to false */
}

static void track(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o) {
  pthread_mutex_lock(&live_lock);
  if (live_count < MAX_LIVE) {
    live[live_count].session = s;
    live[live_count].object = o;
    live_count++;
  }
  write_live();
  pthread_mutex_unlock(&live_lock);
}

/* Forgets one object (object != 0), every object of a session (session != 0), or everything. */
static void forget(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o) {
  int kept = 0;
  pthread_mutex_lock(&live_lock);
  for (int i = 0; i < live_count; i++) {
    int gone = o ? live[i].object == o : s ? live[i].session == s : 1;
    if (!gone) live[kept++] = live[i];
  }
  live_count = kept;
  write_live();
  pthread_mutex_unlock(&live_lock);
}

static CK_RV shim_CreateObject(CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR o) {
  round_trip();
  CK_RV rv = real.C_CreateObject(s, t, n, o);
  if (rv == CKR_OK && is_session_object(t, n)) track(s, *o);
  return rv;
}

static CK_RV shim_GenerateKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR o) {
  round_trip();
  CK_RV rv = real.C_GenerateKey(s, m, t, n, o);
  if (rv == CKR_OK && is_session_object(t, n)) track(s, *o);
  return rv;
}

static CK_RV shim_DestroyObject(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o) {
  round_trip();
  CK_RV rv = real.C_DestroyObject(s, o);
  if (rv == CKR_OK) forget(0, o);
  return rv;
}

static CK_RV shim_CloseSession(CK_SESSION_HANDLE s) {
  CK_RV rv = real.C_CloseSession(s);
  if (rv == CKR_OK) forget(s, 0);
  return rv;
}

static CK_RV shim_CloseAllSessions(CK_SLOT_ID slot) {
  CK_RV rv = real.C_CloseAllSessions(slot);
  if (rv == CKR_OK) forget(0, 0); /* the token has one slot */
  return rv;
}

static CK_RV shim_Finalize(CK_VOID_PTR reserved) {
  CK_RV rv = real.C_Finalize(reserved);
  if (rv == CKR_OK) forget(0, 0);
  return rv;
}

static void maybe_fault(CK_SESSION_HANDLE session, const char *call) {
  const char *file = getenv("BYOK_P11_FAULT_FILE");
  char mode[32] = "", at[64] = "";
  FILE *f;
  CK_SESSION_INFO info;
  CK_RV rv;
  int fields;
  if (!file || !(f = fopen(file, "r"))) return;
  fields = fscanf(f, "%31s %63s", mode, at);
  fclose(f);
  if (fields != 2 || strcmp(at, call) != 0) return;
  if (unlink(file) != 0) return; /* another call took it */
  if (strcmp(mode, "logout") == 0) {
    rv = real.C_Logout(session);
  } else if (real.C_GetSessionInfo(session, &info) == CKR_OK) {
    rv = shim_CloseAllSessions(info.slotID);
  } else {
    rv = CKR_SESSION_HANDLE_INVALID;
  }
  char log[4096];
  snprintf(log, sizeof log, "%s.log", file);
  if ((f = fopen(log, "a"))) {
    fprintf(f, "%s before %s: rv=0x%lx\n", mode, call, (unsigned long)rv);
    fclose(f);
  }
}

static CK_RV shim_GetSessionInfo(CK_SESSION_HANDLE s, CK_SESSION_INFO_PTR info) {
  maybe_fault(s, "C_GetSessionInfo");
  round_trip();
  return real.C_GetSessionInfo(s, info);
}

static CK_RV shim_FindObjectsInit(CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t, CK_ULONG n) {
  maybe_fault(s, "C_FindObjectsInit");
  round_trip();
  return real.C_FindObjectsInit(s, t, n);
}

static CK_RV shim_WrapKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE w, CK_OBJECT_HANDLE k,
                          CK_BYTE_PTR out, CK_ULONG_PTR len) {
  maybe_fault(s, "C_WrapKey");
  round_trip();
  return real.C_WrapKey(s, m, w, k, out, len);
}

static CK_RV shim_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify, CK_SESSION_HANDLE_PTR s) {
  round_trip();
  return real.C_OpenSession(slot, flags, app, notify, s);
}

static CK_RV shim_Login(CK_SESSION_HANDLE s, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG len) {
  round_trip();
  return real.C_Login(s, user, pin, len);
}

static CK_RV shim_FindObjects(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE_PTR o, CK_ULONG max, CK_ULONG_PTR count) {
  round_trip();
  return real.C_FindObjects(s, o, max, count);
}

static CK_RV shim_FindObjectsFinal(CK_SESSION_HANDLE s) {
  round_trip();
  return real.C_FindObjectsFinal(s);
}

static CK_RV shim_GetAttributeValue(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n) {
  round_trip();
  return real.C_GetAttributeValue(s, o, t, n);
}

static CK_RV shim_EncryptInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) {
  round_trip();
  return real.C_EncryptInit(s, m, k);
}

static CK_RV shim_Encrypt(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  round_trip();
  return real.C_Encrypt(s, in, in_len, out, out_len);
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
  static int loaded;
  if (!loaded) {
    const char *target = getenv("BYOK_P11_SHIM_TARGET");
    const char *latency = getenv("BYOK_P11_LATENCY_US");
    void *lib = target ? dlopen(target, RTLD_NOW | RTLD_LOCAL) : NULL;
    CK_C_GetFunctionList get = lib ? (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList") : NULL;
    CK_FUNCTION_LIST_PTR fl;
    if (!get || get(&fl) != CKR_OK) return CKR_GENERAL_ERROR;
    real = *fl;
    shim = *fl;
    latency_us = latency ? (useconds_t)strtoul(latency, NULL, 10) : 0;
    shim.C_OpenSession = shim_OpenSession;
    shim.C_Login = shim_Login;
    shim.C_FindObjects = shim_FindObjects;
    shim.C_FindObjectsFinal = shim_FindObjectsFinal;
    shim.C_GetAttributeValue = shim_GetAttributeValue;
    shim.C_EncryptInit = shim_EncryptInit;
    shim.C_Encrypt = shim_Encrypt;
    shim.C_GetSessionInfo = shim_GetSessionInfo;
    shim.C_FindObjectsInit = shim_FindObjectsInit;
    shim.C_WrapKey = shim_WrapKey;
    shim.C_CreateObject = shim_CreateObject;
    shim.C_GenerateKey = shim_GenerateKey;
    shim.C_DestroyObject = shim_DestroyObject;
    shim.C_CloseSession = shim_CloseSession;
    shim.C_CloseAllSessions = shim_CloseAllSessions;
    shim.C_Finalize = shim_Finalize;
    loaded = 1;
  }
  *list = &shim;
  return CKR_OK;
}
