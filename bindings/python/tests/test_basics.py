"""Errors, XTS, keys, and the byte-for-byte cross-check against an independent XTS."""
import os
import shutil
import subprocess
import threading

import pytest

import vmenc


def test_version_and_errors():
    assert vmenc.version() == "0.5.0"
    assert vmenc.version_number() >> 16 == 0
    e = vmenc.errors.error_for(vmenc.Status.E_AUTH)
    assert isinstance(e, vmenc.AuthError) and isinstance(e, vmenc.CryptoError)
    assert e.name == "VMENC_E_AUTH" and e.status == -300
    assert isinstance(vmenc.errors.error_for(-401), vmenc.KMSUnavailableError)
    assert isinstance(vmenc.errors.error_for(-500), vmenc.DeniedError)
    assert isinstance(vmenc.errors.error_for(-500), PermissionError)
    assert isinstance(vmenc.errors.error_for(-203), vmenc.ParseError)
    assert isinstance(vmenc.errors.error_for(-100), ValueError)
    assert isinstance(vmenc.errors.error_for(-701), vmenc.ResourceError)
    assert isinstance(vmenc.errors.error_for(-600), vmenc.AuditError)
    assert vmenc.errors.error_for(-407).category == vmenc.Category.PROVIDER
    # every status the binding names is one the library names the same way
    for s in vmenc.Status:
        assert vmenc.errors.Error(s).name == "VMENC_" + s.name


def test_xts_roundtrip_and_errors():
    key = bytes(range(64))
    with vmenc.XTS(key, 4096) as x:
        assert x.sector_size == 4096
        data = os.urandom(3 * 4096)
        ct = x.encrypt(7, data)
        assert ct != data and x.decrypt(7, ct) == data
        assert x.encrypt(8, data[4096:8192]) == ct[4096:8192]
        buf = bytearray(data)
        x.encrypt_into(7, buf, buf)
        assert bytes(buf) == ct
        with pytest.raises(vmenc.UsageError) as ei:
            x.encrypt(0, b"x" * 100)
        assert ei.value.name == "VMENC_E_BAD_LENGTH"
        assert "key" not in repr(x).lower() or "00010203" not in repr(x)
    assert x.closed
    with pytest.raises(vmenc.UsageError):
        x.encrypt(0, data)
    with pytest.raises(vmenc.UsageError) as ei:
        vmenc.XTS(b"\x01" * 64)
    assert ei.value.status == vmenc.Status.E_WEAK_KEY
    with pytest.raises(vmenc.UsageError):
        vmenc.XTS(key, 1000)
    assert vmenc.impl_available("portable")


def test_xts_iov_equals_single_calls():
    with vmenc.XTS(os.urandom(64), 512) as x:
        sectors = [0, 5, 2**40, 2**64 - 1, 77]
        plain = [os.urandom(512 * (i % 3 + 1)) for i in range(len(sectors))]
        want = [x.encrypt(s, p) for s, p in zip(sectors, plain)]
        # In place, over bytearrays and writable memoryviews of one arena.
        arena = bytearray(b"".join(plain))
        views, off = [], 0
        for p in plain:
            views.append(memoryview(arena)[off:off + len(p)])
            off += len(p)
        bufs = [bytearray(p) for p in plain]
        x.encrypt_iov(list(zip(sectors, bufs)))
        assert [bytes(b) for b in bufs] == want
        x.encrypt_iov(list(zip(sectors, views)))
        assert bytes(arena) == b"".join(want)
        x.decrypt_iov(list(zip(sectors, views)))
        assert bytes(arena) == b"".join(plain)
        # Out of place, bytes in.
        outs = [bytearray(len(p)) for p in plain]
        x.encrypt_iov([(s, p, o) for s, p, o in zip(sectors, plain, outs)])
        assert [bytes(o) for o in outs] == want
        x.decrypt_iov([(s, bytes(o), o) for s, o in zip(sectors, outs)])
        assert [bytes(o) for o in outs] == plain
        # Empty vector: nothing to do.
        x.encrypt_iov([])
        x.decrypt_iov(())


def test_xts_iov_bad_entry_writes_nothing():
    with vmenc.XTS(os.urandom(64), 512) as x:
        bufs = [bytearray(os.urandom(512)) for _ in range(4)]
        orig = [bytes(b) for b in bufs]
        for bad, exc, name in [(bytearray(100), vmenc.UsageError, "VMENC_E_BAD_LENGTH"),
                               (bytearray(), vmenc.UsageError, "VMENC_E_INVALID_ARG")]:
            with pytest.raises(exc) as ei:
                x.encrypt_iov([(i, b) for i, b in enumerate(bufs)] + [(9, bad)])
            assert ei.value.name == name
            assert [bytes(b) for b in bufs] == orig
        with pytest.raises(ValueError):  # read-only buffer to write into
            x.encrypt_iov([(0, bufs[0]), (1, b"\0" * 512)])
        with pytest.raises(ValueError):
            x.encrypt_iov([(0, bufs[0]), (-1, bufs[1])])
        with pytest.raises(ValueError):
            x.encrypt_iov([(0, bytes(512), bytearray(1024))])
        with pytest.raises(ValueError):
            x.encrypt_iov([(0,)])
        assert [bytes(b) for b in bufs] == orig
    with pytest.raises(vmenc.UsageError):
        x.encrypt_iov([(0, bufs[0])])


def test_xts_iov_holds_buffers_during_call():
    # A bytearray in a vector cannot be resized while C may write to it:
    # the binding keeps it exported until the call returns, then releases it.
    with vmenc.XTS(os.urandom(64), 512) as x:
        b = bytearray(512)
        x.encrypt_iov([(0, b)])
        b.extend(b"x")  # released afterwards
        assert len(b) == 513


HERE = os.path.dirname(os.path.abspath(__file__))
REF_SRC = os.path.join(HERE, "..", "..", "testdata", "xts_ref.c")


@pytest.fixture(scope="session")
def xts_ref(tmp_path_factory):
    """bindings/testdata/xts_ref built against OpenSSL and, when the build tree
    is known (VMENC_BUILD_DIR + VMENC_SOURCE_DIR), against libvmenc from C."""
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler for the reference helper")
    exe = str(tmp_path_factory.mktemp("ref") / "xts_ref")
    cmd = [cc, REF_SRC, "-o", exe, "-lcrypto"]
    b, s = os.environ.get("VMENC_BUILD_DIR"), os.environ.get("VMENC_SOURCE_DIR")
    if b and s:
        cmd += ["-DWITH_VMENC", "-I", os.path.join(s, "include"), "-L", b, "-lvmenc", f"-Wl,-rpath,{b}"]
    subprocess.run(cmd, check=True)
    return exe, bool(b and s)


@pytest.mark.parametrize("impl", ["auto", "portable", "aesni"])
@pytest.mark.parametrize("sector_size", [512, 4096])
def test_xts_matches_c_library_and_openssl(xts_ref, impl, sector_size):
    """Same key, same sectors -> the same ciphertext as libvmenc called from C
    and as OpenSSL's XTS (tweak = sector number, little endian: plain64)."""
    exe, with_vmenc = xts_ref
    if impl != "auto" and not vmenc.impl_available(impl):
        pytest.skip(f"{impl} not available here")
    key = bytes((i * 7 + 3) & 0xFF for i in range(64))
    data = bytes((i * 13) & 0xFF for i in range(4 * sector_size))
    first = (1 << 40) + 1000
    with vmenc.XTS(key, sector_size, None if impl == "auto" else impl) as x:
        ct = x.encrypt(first, data)
    refs = ["openssl"] + (["vmenc"] if with_vmenc else [])
    for ref in refs:
        out = subprocess.run([exe, ref, key.hex(), str(first), str(sector_size)], input=data,
                             capture_output=True, check=True).stdout
        assert out == ct, f"binding differs from {ref}"


def test_xts_threads():
    with vmenc.XTS(vmenc.random_bytes(64), 512) as x:
        data = os.urandom(64 * 1024)
        want = x.encrypt(0, data)
        bad = []

        def work():
            for _ in range(50):
                if x.encrypt(0, data) != want:
                    bad.append(1)
        ts = [threading.Thread(target=work) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not bad


def test_keys_and_records():
    ctx = vmenc.WrapContext("4f7e0000-0000-4000-8000-000000000001", "scsi0:0", "disk")
    raw = bytearray(vmenc.random_bytes(64))
    dek = vmenc.DEK.from_bytes(raw)
    vmenc.memzero(raw)
    assert raw == bytearray(64)
    kek = vmenc.KEK.generate()
    with dek, kek:
        for alg in ("aes256-gcm", "aes256-kwp"):
            wk = dek.wrap(kek, "kp1", "kek-1", ctx, alg=alg)
            assert wk.alg == alg and wk.provider_alias == "kp1" and wk.kek_id == "kek-1"
            again = vmenc.WrappedKey.parse(wk.to_bytes())
            assert again.to_text() == wk.to_text()
            assert vmenc.WrappedKey.from_text(wk.to_text()).unwrap(kek, ctx) == dek
            with pytest.raises(vmenc.AuthError):
                wk.unwrap(kek, vmenc.WrapContext("other", "scsi0:0", "disk"))
            with pytest.raises(vmenc.AuthError):
                wk.unwrap(vmenc.KEK.generate(), ctx)
            b = bytearray(wk.to_bytes())
            b[-1] ^= 1
            with pytest.raises(vmenc.AuthError):
                vmenc.WrappedKey.parse(b).unwrap(kek, ctx)
        with pytest.raises(vmenc.ParseError):
            vmenc.WrappedKey.parse(b"garbage")
        with pytest.raises(vmenc.ParseError):
            vmenc.WrappedKey.from_text("vmwk1:!!!")
        assert dek != vmenc.DEK.generate()
        assert "secure memory" in repr(dek) and "secure memory" in repr(kek)
        # the XTS context from a DEK matches the one from the same bytes
        with dek.xts(512) as a:
            assert a.encrypt(0, b"z" * 512) != b"z" * 512
    k = bytes(range(1, 33))
    w = vmenc.aes_kwp_wrap(k, b"secret-bytes")
    assert bytes(vmenc.aes_kwp_unwrap(k, w)) == b"secret-bytes"
    with pytest.raises(vmenc.AuthError):
        vmenc.aes_kwp_unwrap(bytes(range(2, 34)), w)
