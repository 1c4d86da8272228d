"""trafilatura's own command line, with the news web's host names resolving to loopback.

Its feed and sitemap modes refuse URLs with IP addresses, so the benchmark serves the local
sites under names (siteNNN.newsweb.test, see tests/newsweb.py) that only this process
resolves. One more change, to score its output: each result file is named after the URL it
was downloaded from (`url_filename`), not after a hash of its content, because the JSON's
`source` is the page's own canonical URL. The work done is trafilatura's CLI, unchanged:

    python -m benchmarks.peer --feed -i feeds.txt --json --with-metadata -o out/
"""

from __future__ import annotations

import hashlib
import re
import socket
import sys
from typing import Any

_NAME = re.compile(r"^site(\d{3})\.newsweb\.test$")
_getaddrinfo = socket.getaddrinfo


def _resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
    match = _NAME.match(str(host))
    if match:
        index = int(match[1]) + 2  # the address tests/newsweb.py gives host number N
        host = f"127.0.{index // 256}.{index % 256}"
    return _getaddrinfo(host, *args, **kwargs)


def url_filename(url: str) -> str:
    return hashlib.sha1(url.encode()).hexdigest()[:20]


def main() -> None:
    socket.getaddrinfo = _resolve
    from trafilatura import cli_utils
    from trafilatura.cli import main as trafilatura_main

    def process_result(htmlstring: str, args: Any, counter: int, options: Any) -> int:
        # cli_utils.process_result without its backup option, naming the file by URL
        result = cli_utils.examine(htmlstring, args, options=options)
        name = url_filename(options.url or "")
        cli_utils.write_result(result, args, counter=counter, new_filename=name)
        return counter + 1 if counter >= 0 and result else counter

    cli_utils.process_result = process_result

    sys.argv[0] = "trafilatura"
    trafilatura_main()


if __name__ == "__main__":
    main()
