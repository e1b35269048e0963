// Stage tables on a target connection: one temp table per shape, with the
// target table's column types (text from the source parses into them) and an op
// column. A stage lives as long as its connection, so it is created once, not per
// batch; one created in a transaction that rolled back is gone, so a stage only
// counts as there once its transaction committed. A batch cut by DDL fills a
// stage once per part: a stage already filled in this transaction is emptied first.
import { Client, escapeIdentifier as ident } from "pg";
import { Shape, qualifiedName } from "../source/catalog";

export interface Stage {
  /** The temp table, quoted. */
  name: string;
  /** Its op column ('U': new state, 'D': deleted), quoted. */
  op: string;
}

export class StageTables {
  private ready = new Set<number>();
  private pending = new Set<number>();
  /** Stages filled in the current transaction. */
  private filled = new Set<number>();

  /** The shape's stage, created if need be, and empty. */
  async ensure(target: Client, shape: Shape): Promise<Stage> {
    const stage = stageOf(shape);
    if (!this.ready.has(shape.shape_id) && !this.pending.has(shape.shape_id)) {
      const cols = shape.columns.map((c) => `t.${ident(c)}`);
      await target.query(
        `create temp table if not exists ${stage.name} on commit delete rows as
           select null::"char" as ${stage.op}, ${cols.join(", ")} from ${qualifiedName(shape)} t with no data`,
      );
      this.pending.add(shape.shape_id);
    } else if (this.filled.has(shape.shape_id)) {
      await target.query(`truncate ${stage.name}`);
    }
    this.filled.add(shape.shape_id);
    return stage;
  }

  committed() {
    for (const id of this.pending) this.ready.add(id);
    this.pending.clear();
    this.filled.clear();
  }

  rolledBack() {
    this.pending.clear();
    this.filled.clear();
  }
}

function stageOf(shape: Shape): Stage {
  // The op column takes a name none of the table's columns has.
  let op = "dbsync_op";
  while (shape.columns.includes(op)) op += "_";
  return { name: ident(`dbsync_stage_${shape.shape_id}`), op: ident(op) };
}
