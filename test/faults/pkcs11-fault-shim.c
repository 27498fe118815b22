/*
 * A PKCS#11 library that forwards every call to the real one (BYOK_P11_SHIM_TARGET, e.g.
 * libsofthsm2.so) and, on request, ends the caller's HSM sessions under it: the fault suite's
 * way to make the worker's session or login invalid mid-run, from outside the worker.
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
 * Built by the fault suite: cc -shared -fPIC -I node_modules/pkcs11js/includes ... -ldl
 */
#include <dlfcn.h>
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
  if (live_count < MAX_LIVE) {
    live[live_count].session = s;
    live[live_count].object = o;
    live_count++;
  }
  write_live();
}

/* Forgets one object (object != 0), every object of a session (session != 0), or everything. */
static void forget(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o) {
  int kept = 0;
  for (int i = 0; i < live_count; i++) {
    int gone = o ? live[i].object == o : s ? live[i].session == s : 1;
    if (!gone) live[kept++] = live[i];
  }
  live_count = kept;
  write_live();
}

static CK_RV shim_CreateObject(CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR o) {
  CK_RV rv = real.C_CreateObject(s, t, n, o);
  if (rv == CKR_OK && is_session_object(t, n)) track(s, *o);
  return rv;
}

static CK_RV shim_GenerateKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR o) {
  CK_RV rv = real.C_GenerateKey(s, m, t, n, o);
  if (rv == CKR_OK && is_session_object(t, n)) track(s, *o);
  return rv;
}

static CK_RV shim_DestroyObject(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o) {
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
  return real.C_GetSessionInfo(s, info);
}

static CK_RV shim_FindObjectsInit(CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t, CK_ULONG n) {
  maybe_fault(s, "C_FindObjectsInit");
  return real.C_FindObjectsInit(s, t, n);
}

static CK_RV shim_WrapKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE w, CK_OBJECT_HANDLE k,
                          CK_BYTE_PTR out, CK_ULONG_PTR len) {
  maybe_fault(s, "C_WrapKey");
  return real.C_WrapKey(s, m, w, k, out, len);
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
  static int loaded;
  if (!loaded) {
    const char *target = getenv("BYOK_P11_SHIM_TARGET");
    void *lib = target ? dlopen(target, RTLD_NOW | RTLD_LOCAL) : NULL;
    CK_C_GetFunctionList get = lib ? (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList") : NULL;
    CK_FUNCTION_LIST_PTR fl;
    if (!get || get(&fl) != CKR_OK) return CKR_GENERAL_ERROR;
    real = *fl;
    shim = *fl;
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
