# jupyter-server's configuration in the code-interpreter-v1 template (the supervisor passes it with
# --config; packages/code-interpreter/src/main.ts).
#
# Kernel WebSockets without Nagle's algorithm. Tornado leaves it on unless a handler calls
# set_nodelay(True) (its documentation says to, in open, for small messages), and jupyter-server's
# kernel channels handler does not. Each run sends several small frames (status, execute_input,
# the result, the reply, status idle): with Nagle on, each one after the first waited for the
# client's delayed ACK, ~40 ms, and runCode('1 + 1') took ~50 ms where ~12 ms is the work.
import functools


def _without_nagle(handler_class):
    opened = handler_class.open

    @functools.wraps(opened)
    def open(self, *args, **kwargs):
        self.set_nodelay(True)
        return opened(self, *args, **kwargs)

    handler_class.open = open


try:  # jupyter-server 2
    from jupyter_server.services.kernels.websocket import KernelWebsocketHandler as _Handler
except ImportError:  # jupyter-server 1 (Debian's 1.23)
    from jupyter_server.services.kernels.handlers import ZMQChannelsHandler as _Handler

_without_nagle(_Handler)
