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
    rv = real.C_CloseAllSessions(info.slotID);
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
    loaded = 1;
  }
  *list = &shim;
  return CKR_OK;
}
