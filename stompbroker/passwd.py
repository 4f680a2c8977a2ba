"""``stompbroker-passwd`` (or ``python -m stompbroker.passwd``): print a password's hash.

The password is read from a prompt (twice, to catch typos) when standard input is a
terminal, else from the first line of standard input; never from the command line,
where other users of the machine could see it. The hash goes to standard output, for
``password_hash`` in the configuration's ``security.users`` or in a users file.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence

from stompbroker.core import SCRYPT_N, hash_password


def main(argv: Sequence[str] | None = None) -> int:
    """Read a password, print its hash; 0 on success, 2 when no usable password came."""
    parser = argparse.ArgumentParser(
        prog="stompbroker-passwd",
        description="Print the hash of a password for security.users[].password_hash. "
        "The password is prompted for, or read from the first line of standard input.",
    )
    parser.add_argument(
        "--work-factor",
        type=int,
        default=SCRYPT_N.bit_length() - 1,
        choices=range(14, 21),
        metavar="14..20",
        help="log2 of scrypt's N: each step doubles the time and memory a login "
        "costs (14: 16 MiB, about 50 ms) [default: %(default)s]",
    )
    args = parser.parse_args(argv)
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Again: "):
            print("stompbroker-passwd: the passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("stompbroker-passwd: no password given", file=sys.stderr)
        return 2
    print(hash_password(password, n=2**args.work_factor))
    return 0


if __name__ == "__main__":
    sys.exit(main())
