"""Rich results for Sandlot's code interpreter, an IPython extension (the kernel spec loads it).

Beside what IPython shows already (text, HTML, PNG, ...), two MIME types that E2B's code
interpreter clients read:

- ``e2b/chart``: a matplotlib figure described as data (charts.py), next to its PNG;
- ``e2b/data``: a pandas DataFrame as ``{column: [values]}``, next to its HTML.

Neither matplotlib nor pandas is imported until the user's code does: DataFrames are formatted by
type name, figures through a method put on matplotlib's Figure when it is imported (a formatter
registered for Figure would not last: IPython drops every Figure formatter when the inline backend
is set up).
"""
import json

from IPython.core.formatters import BaseFormatter
from traitlets import ObjectName, Unicode

from . import charts


class _DictFormatter(BaseFormatter):
    """A formatter whose data is a JSON object (dict): from types registered with it, or objects
    that have its print method."""

    format_type = Unicode("application/x-sandlot")
    _return_type = dict
    print_method = ObjectName("_repr_sandlot_never_")


def _quiet(fn):
    """A formatter that never disturbs the user's output: on any failure the MIME type is left out."""

    def wrapped(obj):
        try:
            return fn(obj)
        except Exception:  # noqa: BLE001 - a chart we cannot read is not the user's error
            return None

    return wrapped


def dataframe_data(df):
    """A DataFrame as {column: [values]}; NaN as null, dates as ISO strings (pandas' own JSON)."""
    return {str(c): json.loads(df[c].to_json(orient="values", date_format="iso", default_handler=str)) for c in df.columns}


def _formatter(ip, mime, print_method):
    formatters = ip.display_formatter.formatters
    if mime not in formatters:
        formatters[mime] = _DictFormatter(parent=ip.display_formatter, format_type=mime, print_method=print_method)
    return formatters[mime]


def load_ipython_extension(ip):
    _formatter(ip, "e2b/chart", charts.PRINT_METHOD)
    _formatter(ip, "e2b/data", "_repr_sandlot_never_").for_type_by_name("pandas.core.frame", "DataFrame", _quiet(dataframe_data))
    charts.install(_quiet(charts.figure_chart))
