"""A matplotlib figure as chart data (the ``e2b/chart`` MIME type E2B's clients read).

One axes gives one chart: ``pie`` (wedges), ``box_and_whisker`` (what ``boxplot`` computed),
``bar`` (bar containers), ``line`` (lines), ``scatter`` (point collections), else ``unknown``.
A figure of several axes is a ``superchart`` whose elements are the axes' charts. Values on date
axes are ISO strings, on categorical axes the category names.
"""
import importlib.abc
import importlib.util
import math
import re
import sys

_UNIT = (re.compile(r"\(([^()]+)\)\s*$"), re.compile(r"\[([^\[\]]+)\]\s*$"))


def _unit(label):
    for pattern in _UNIT:
        m = pattern.search(label or "")
        if m:
            return m.group(1).strip()
    return None


def _number(v):
    """A JSON-safe number: NaN and infinities are null."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return None if math.isnan(f) or math.isinf(f) else f


def _round(v, digits=6):
    f = _number(v)
    return round(f, digits) if isinstance(f, float) else f


class _Axis:
    """How values on one axis read: its scale, and a converter from plotted floats to values."""

    def __init__(self, axis):
        from matplotlib import category, dates

        self.axis = axis
        locator = axis.get_major_locator()
        if isinstance(locator, dates.DateLocator):
            self.scale = "datetime"
            self.value = lambda v: dates.num2date(v).isoformat()
        elif isinstance(locator, category.StrCategoryLocator):
            self.scale = "categorical"
            names = {index: name for name, index in (getattr(axis.units, "_mapping", None) or {}).items()}
            self.value = lambda v: names.get(int(round(v)), str(v)) if _number(v) is not None else None
        else:
            self.scale = axis.get_scale()
            self.value = _number

    def ticks(self):
        return [self.value(t) for t in self.axis.get_ticklocs()]

    def tick_labels(self):
        return [t.get_text() for t in self.axis.get_ticklabels()]


def _labels(ax):
    x_label, y_label = ax.get_xlabel(), ax.get_ylabel()
    return {"x_label": x_label or None, "y_label": y_label or None, "x_unit": _unit(x_label), "y_unit": _unit(y_label)}


def _point_chart(ax, kind, elements_of):
    x, y = _Axis(ax.xaxis), _Axis(ax.yaxis)
    return {
        "type": kind,
        "title": ax.get_title(),
        **_labels(ax),
        "x_ticks": x.ticks(),
        "x_tick_labels": x.tick_labels(),
        "x_scale": x.scale,
        "y_ticks": y.ticks(),
        "y_tick_labels": y.tick_labels(),
        "y_scale": y.scale,
        "elements": elements_of(x, y),
    }


def _lines(ax):
    return [line for line in ax.get_lines() if line.get_visible() and len(line.get_xdata(orig=False))]


def _line_chart(ax):
    def elements(x, y):
        return [
            {"label": line.get_label(), "points": [[x.value(a), y.value(b)] for a, b in zip(line.get_xdata(orig=False), line.get_ydata(orig=False))]}
            for line in _lines(ax)
        ]

    return _point_chart(ax, "line", elements)


def _scatter_chart(ax):
    from matplotlib.collections import PathCollection

    def elements(x, y):
        return [
            {"label": c.get_label(), "points": [[x.value(a), y.value(b)] for a, b in c.get_offsets()]}
            for c in ax.collections
            if isinstance(c, PathCollection)
        ]

    return _point_chart(ax, "scatter", elements)


def _bar_chart(ax, containers):
    elements = []
    for container in containers:
        vertical = getattr(container, "orientation", "vertical") != "horizontal"
        along = _Axis(ax.xaxis if vertical else ax.yaxis)
        ticks = list(zip(along.axis.get_ticklocs(), along.tick_labels()))
        group = container.get_label()
        for bar in container.patches:
            center = bar.get_x() + bar.get_width() / 2 if vertical else bar.get_y() + bar.get_height() / 2
            label = along.value(center) if along.scale in ("categorical", "datetime") else None
            if label is None:
                near = [text for at, text in ticks if abs(at - center) < 1e-6 and text]
                label = near[0] if near else str(_round(center))
            elements.append({"label": label, "value": _number(bar.get_height() if vertical else bar.get_width()), "group": group})
    return {"type": "bar", "title": ax.get_title(), **_labels(ax), "elements": elements}


def _pie_chart(ax, wedges):
    # Wedges keep their angles in single precision: 324 reads 323.999991.
    elements = [{"label": w.get_label(), "angle": _round(abs(w.theta2 - w.theta1), 3), "radius": _number(w.r)} for w in wedges]
    return {"type": "pie", "title": ax.get_title(), "elements": elements}


def _box_chart(ax, boxes):
    labels = [t.get_text() for t in ax.xaxis.get_ticklabels()]
    elements = []
    for i, stats in enumerate(boxes):
        label = stats.get("label")
        elements.append(
            {
                "label": str(label) if label is not None else (labels[i] if i < len(labels) else str(i + 1)),
                "min": _number(stats["whislo"]),
                "first_quartile": _number(stats["q1"]),
                "median": _number(stats["med"]),
                "third_quartile": _number(stats["q3"]),
                "max": _number(stats["whishi"]),
                "outliers": [_number(v) for v in stats.get("fliers", [])],
            }
        )
    return {"type": "box_and_whisker", "title": ax.get_title(), **_labels(ax), "elements": elements}


def axes_chart(ax):
    from matplotlib.container import BarContainer
    from matplotlib.patches import Wedge

    wedges = [p for p in ax.patches if isinstance(p, Wedge)]
    if wedges:
        return _pie_chart(ax, wedges)
    boxes = getattr(ax, "_sandlot_boxes", None)
    if boxes:
        return _box_chart(ax, boxes)
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    if bars:
        return _bar_chart(ax, bars)
    if _lines(ax):
        return _line_chart(ax)
    if ax.collections:
        return _scatter_chart(ax)
    return {"type": "unknown", "title": ax.get_title(), "elements": []}


def figure_chart(fig):
    """The figure's chart (its one axes'), a superchart of several, or None for an empty figure."""
    # Tick labels are made when the figure is laid out.
    fig.draw_without_rendering()
    axes = [ax for ax in fig.get_axes() if ax.get_visible() and (ax.axison or ax.patches)]
    if not axes:
        return None
    if len(axes) == 1:
        return axes_chart(axes[0])
    title = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) else ""
    return {"type": "superchart", "title": title, "elements": [axes_chart(ax) for ax in axes]}


PRINT_METHOD = "_repr_e2b_chart_"


def _record_bxp(axes_module):
    """Keeps the statistics ``boxplot`` drew on its axes (``bxp`` gets them computed)."""
    axes_class = axes_module.Axes
    if getattr(axes_class.bxp, "_sandlot", False):
        return
    original = axes_class.bxp

    def bxp(self, bxpstats, *args, **kwargs):
        drawn = original(self, bxpstats, *args, **kwargs)
        self._sandlot_boxes = list(getattr(self, "_sandlot_boxes", [])) + [dict(s) for s in bxpstats]
        return drawn

    bxp._sandlot = True
    axes_class.bxp = bxp


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs a function on a module right after it is first imported (without importing it now)."""

    def __init__(self, name, fn):
        self.name, self.fn = name, fn

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module, fn = spec.loader.exec_module, self.fn

        def exec_and_patch(module):
            exec_module(module)
            fn(module)

        spec.loader.exec_module = exec_and_patch
        return spec


def _after_import(name, fn):
    if name in sys.modules:
        fn(sys.modules[name])
    else:
        sys.meta_path.insert(0, _AfterImport(name, fn))


def install(chart_of):
    """Figures get the e2b/chart formatter's method; box plots keep their statistics."""

    def add_method(figure_module):
        setattr(figure_module.Figure, PRINT_METHOD, lambda fig: chart_of(fig))

    _after_import("matplotlib.figure", add_method)
    _after_import("matplotlib.axes._axes", _record_bxp)
