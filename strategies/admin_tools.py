"""Building blocks shared by the console's ModelAdmins: a paginator that never counts a
million rows, fixed-choice list filters (no SELECT DISTINCT over history), status badges."""

from __future__ import annotations

from decimal import Decimal

from django.contrib import admin
from django.core.paginator import Paginator
from django.utils.functional import cached_property
from django.utils.html import format_html

COUNT_CAP = 10_000


class CappedCountPaginator(Paginator):
    """Counts at most COUNT_CAP rows (`SELECT COUNT(*) FROM (... LIMIT cap)`), so a list
    over years of signals costs the same as one over a day. Pages past the cap are still
    reachable by filtering; `capped` tells the template to say "10,000+"."""

    @cached_property
    def count(self) -> int:
        qs = self.object_list
        try:
            return qs.order_by()[: COUNT_CAP + 1].count()
        except (AttributeError, TypeError):
            return len(qs)

    @property
    def capped(self) -> bool:
        return self.count > COUNT_CAP


class FastListMixin:
    """List settings every history table in the console uses."""

    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 50
    list_max_show_all = 200
    # Deferred on the list page only (the detail page needs them).
    list_defer: tuple[str, ...] = ()

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        match = getattr(request, "resolver_match", None)
        if self.list_defer and match and match.url_name and match.url_name.endswith("_changelist"):
            qs = qs.defer(*self.list_defer)
        return qs


def choices_filter(field: str, title: str, choices: list[tuple[str, str]]) -> type[admin.SimpleListFilter]:
    """A list filter over a fixed set of values; Django's AllValuesFieldListFilter would
    run SELECT DISTINCT over the whole table on every page view."""

    class _Filter(admin.SimpleListFilter):
        parameter_name = field

        def lookups(self, request, model_admin):
            return choices

        def queryset(self, request, queryset):
            value = self.value()
            return queryset.filter(**{field: value}) if value else queryset

    _Filter.title = title
    _Filter.__name__ = f"{field.title()}Filter"
    return _Filter


def status_badge(value: str, label: str | None = None):
    return format_html('<span class="tv-status tv-s-{}">{}</span>', value, label or value)


def ms_between(start, end) -> str:
    if not start or not end:
        return "–"
    delta = (end - start).total_seconds() * 1000
    if abs(delta) < 1000:
        return f"{delta:.0f} ms"
    if abs(delta) < 120_000:
        return f"{delta / 1000:.2f} s"
    return f"{delta / 60000:.1f} min"


def plain_number(value: Decimal | None) -> str:
    """A Decimal as people write it: 96412.3, 100000, 0.01 (no trailing zeros, no exponent)."""
    if value is None:
        return "–"
    text = f"{value.normalize():f}"
    return "0" if text in ("-0", "0E-12") else text


def install_plain_decimals() -> None:
    """Django's admin prints a DecimalField with all its decimal places (96412.300000000000);
    the console prints the number (96412.3). List cells and read-only fields both go through
    `display_for_field`/`display_for_value`, which the admin's modules import by name, so the
    wrapper is installed where they look it up. Idempotent."""
    from django.contrib.admin import helpers, utils
    from django.contrib.admin.templatetags import admin_list

    if getattr(utils.display_for_field, "plain_decimals", False):
        return
    by_field, by_value = utils.display_for_field, utils.display_for_value

    def display_for_field(value, field, empty_value_display, *args, **kwargs):
        if isinstance(value, Decimal) and not getattr(field, "flatchoices", None):
            return plain_number(value)
        return by_field(value, field, empty_value_display, *args, **kwargs)

    def display_for_value(value, empty_value_display, *args, **kwargs):
        if isinstance(value, Decimal):
            return plain_number(value)
        return by_value(value, empty_value_display, *args, **kwargs)

    display_for_field.plain_decimals = True  # type: ignore[attr-defined]
    for module in (utils, helpers, admin_list):
        if hasattr(module, "display_for_field"):
            module.display_for_field = display_for_field
        if hasattr(module, "display_for_value"):
            module.display_for_value = display_for_value


# --- CSV export ------------------------------------------------------------------------------

CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> str:
    """A value for a spreadsheet: numbers plain, times in ISO 8601 with their offset, and text
    that a spreadsheet would run as a formula (an alert's comment is anyone's text) quoted."""
    from datetime import datetime

    if value is None:
        return ""
    if isinstance(value, Decimal):
        return plain_number(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value)
    if text.startswith(CSV_FORMULA_START):
        try:
            Decimal(text)
        except ArithmeticError:
            return "'" + text
    return text


class _Echo:
    def write(self, value: str) -> str:
        return value


class CsvExportMixin:
    """ "Export CSV" on a list: every row the list's current filters and search select (not
    only the page shown), streamed, so a year of fills costs no memory. `csv_columns` is
    ((header, attribute or callable(obj)), ...)."""

    csv_columns: tuple = ()
    csv_chunk = 2000

    def get_urls(self):
        from django.urls import path

        opts = self.model._meta
        name = f"{opts.app_label}_{opts.model_name}_export_csv"
        return [path("export.csv", self.admin_site.admin_view(self.export_csv_view), name=name)] + super().get_urls()

    def csv_objects(self, request, queryset):
        """The rows to write (an iterable: a subclass may add computed attributes)."""
        return queryset.iterator(chunk_size=self.csv_chunk)

    def export_csv_view(self, request):
        import csv

        from django.contrib import messages
        from django.contrib.admin.options import IncorrectLookupParameters
        from django.core.exceptions import PermissionDenied
        from django.http import HttpResponseRedirect, StreamingHttpResponse
        from django.utils import timezone

        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            messages.error(request, "Those filters are not valid for this list; nothing was exported.")
            return HttpResponseRedirect(request.path.rsplit("export.csv", 1)[0])
        objects = self.csv_objects(request, changelist.queryset)
        writer = csv.writer(_Echo())

        def rows():
            yield writer.writerow([header for header, _ in self.csv_columns])
            for obj in objects:
                yield writer.writerow(
                    [csv_cell(get(obj) if callable(get) else _dotted(obj, get)) for _, get in self.csv_columns]
                )

        name = f"{self.model._meta.model_name}s-{timezone.now():%Y%m%d-%H%M%S}.csv"
        response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


def _dotted(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj
