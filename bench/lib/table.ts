// One way to print a bench's figures: columns padded to their widths, names to the left and
// figures to the right, a rule under the titles. Rows printed as they come (a run at a time)
// use each column's declared width; a finished table is sized to its widest cells.

export interface Column {
  readonly title: string;
  /** Left-aligned (names); figures are right-aligned. */
  readonly left?: boolean;
  /** The least width; the title's length when larger. */
  readonly width?: number;
}

export type Cell = string | number;

const GAP = "  ";

/** `n` with `digits` decimals, or "-" where there is no figure. */
export function fmt(n: number | undefined, digits = 0): string {
  return n === undefined || Number.isNaN(n) ? "-" : n.toFixed(digits);
}

/** `a / b` to two decimals: how many times `b` `a` is. */
export const ratio = (a: number, b: number): string => fmt(a / b, 2);

function widthsOf(columns: readonly Column[], rows: readonly (readonly Cell[])[]): number[] {
  return columns.map((c, i) =>
    Math.max(c.title.length, c.width ?? 0, ...rows.map((r) => String(r[i] ?? "").length)),
  );
}

function line(columns: readonly Column[], widths: readonly number[], cells: readonly Cell[]) {
  return columns
    .map((c, i) => {
      const s = String(cells[i] ?? "");
      return c.left ? s.padEnd(widths[i]!) : s.padStart(widths[i]!);
    })
    .join(GAP)
    .trimEnd();
}

/** Prints the titles and the rule; `row()` then prints a row in the same widths. */
function begin(columns: readonly Column[], widths: readonly number[]) {
  console.log(
    line(
      columns,
      widths,
      columns.map((c) => c.title),
    ),
  );
  console.log(
    widths
      .map((w) => "-".repeat(w))
      .join(GAP)
      .trimEnd(),
  );
  return { row: (cells: readonly Cell[]) => console.log(line(columns, widths, cells)) };
}

/** For rows printed as they come: each column as wide as its title or declared width. */
export function streamTable(columns: readonly Column[]): { row(cells: readonly Cell[]): void } {
  return begin(columns, widthsOf(columns, []));
}

/** Prints a whole table, each column as wide as its widest cell. */
export function printTable(columns: readonly Column[], rows: readonly (readonly Cell[])[]): void {
  const table = begin(columns, widthsOf(columns, rows));
  for (const r of rows) table.row(r);
}
