/*
 * lib/xts/vregs.h - zeroing the vector registers before a SIMD engine
 * returns (the XTS backends through xts_body.h's XB_CLEAR_VREGS, the GCM
 * engines directly). Round keys, tweaks, keystream and hash state must not
 * outlive the call in registers a later signal frame or core dump could
 * save; tests/test_xts_residue.c checks it at run time and
 * tests/xts_disasm.test.sh in the object code.
 *
 * Safety rule: a function that ran with key material in vector registers
 * ends with the clear that covers every register its code may use - 16 for
 * SSE/AVX2 code, 32 for code built with AVX-512.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_XTS_VREGS_H
#define VMENC_LIB_XTS_VREGS_H

#define VREG_SSE_(n) "pxor %%xmm" #n ", %%xmm" #n "\n\t"
#define VREG_VEX_(n) "vpxor %%xmm" #n ", %%xmm" #n ", %%xmm" #n "\n\t"
#define VREG_EVEX_(n) "vpxord %%xmm" #n ", %%xmm" #n ", %%xmm" #n "\n\t"
#define VREGS_LO16_(R) R(0) R(1) R(2) R(3) R(4) R(5) R(6) R(7) R(8) R(9) R(10) R(11) R(12) R(13) R(14) R(15)
#define VREGS_HI16_(R)                                                                            \
    R(16) R(17) R(18) R(19) R(20) R(21) R(22) R(23) R(24) R(25) R(26) R(27) R(28) R(29) R(30) R(31)
#define VREGS_CLOBBER16_                                                                          \
    "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", \
        "xmm12", "xmm13", "xmm14", "xmm15"

/* SSE code (legacy encoding: no AVX transition penalty). */
#define VMENC_CLEAR_VREGS16_SSE() __asm__ __volatile__(VREGS_LO16_(VREG_SSE_)::: VREGS_CLOBBER16_)

/* AVX/AVX2 code: the VEX forms also clear the upper halves. */
#define VMENC_CLEAR_VREGS16() __asm__ __volatile__(VREGS_LO16_(VREG_VEX_)::: VREGS_CLOBBER16_)

/* AVX-512 code: all 32 (the xmm forms clear the whole zmm; zeroing idioms
 * use no execution unit). Only in files compiled with -mavx512f. */
#define VMENC_CLEAR_VREGS32()                                                                     \
    __asm__ __volatile__(VREGS_LO16_(VREG_VEX_) VREGS_HI16_(VREG_EVEX_)::: VREGS_CLOBBER16_, "xmm16", \
                         "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", \
                         "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31")

#endif /* VMENC_LIB_XTS_VREGS_H */
