"""PyKMIP's own client, the independent KMIP implementation vmenc's KMIP
tests check interoperability against. Run with /usr/bin/python3.

usage: kmip_interop.py CLIENT_CONF COMMAND [ARGS]
  create NAME [BITS] [noactivate]  Create an AES key (default 256 bits),
                                   Activate it unless told not to; print
                                   "UID KEYHEX"
  get UID                          print "KEYHEX STATE" (e.g. ACTIVE)
  lifecycle                        Create/Activate/Get/Locate/Revoke/Destroy
CLIENT_CONF is a file with a [client] section (pykmip.sh writes
DIR/client-PORT.conf).
"""
import sys
import warnings

warnings.filterwarnings("ignore")
from kmip import enums  # noqa: E402
from kmip.core.factories import attributes  # noqa: E402
from kmip.pie.client import ProxyKmipClient  # noqa: E402


def main(argv):
    conf, cmd, args = argv[1], argv[2], argv[3:]
    with ProxyKmipClient(config="client", config_file=conf) as c:
        if cmd == "create":
            bits = int(args[1]) if len(args) > 1 else 256
            uid = c.create(enums.CryptographicAlgorithm.AES, bits, name=args[0],
                           cryptographic_usage_mask=[enums.CryptographicUsageMask.ENCRYPT,
                                                     enums.CryptographicUsageMask.DECRYPT])
            if "noactivate" not in args:
                c.activate(uid)
            print(uid, c.get(uid).value.hex())
        elif cmd == "get":
            attrs = c.get_attributes(args[0], ["State"])[1]
            print(c.get(args[0]).value.hex(), attrs[0].attribute_value.value.name)
        elif cmd == "lifecycle":
            f = attributes.AttributeFactory()
            uid = c.create(enums.CryptographicAlgorithm.AES, 256, name="interop-lifecycle")
            c.activate(uid)
            c.get(uid)
            c.locate(attributes=[f.create_attribute(enums.AttributeType.NAME, "interop-lifecycle")])
            c.revoke(enums.RevocationReasonCode.CESSATION_OF_OPERATION, uid)
            c.destroy(uid)
            print("ok")
        else:
            print("unknown command", cmd, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
