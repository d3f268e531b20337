/* ProcessPrng, which Rust's standard library takes from bcryptprimitives.dll and
   wine 8 does not provide: random bytes from RtlGenRandom (advapi32's
   SystemFunction036). Test support only, for running the Windows build under wine. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk)) {
            return FALSE;
        }
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
