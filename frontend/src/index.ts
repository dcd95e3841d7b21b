/**
 * nbmagic frontend extension (JupyterLab 4 / Notebook 7).
 *
 * The kernel side (nbmagic/notebook/live.py) cannot wait for the browser while a
 * cell runs: the kernel's shell channel is busy, so nothing the browser sends is
 * read until the cell ends. Messages the kernel sends on iopub do arrive live.
 * The protocol therefore never needs an answer mid-run:
 *
 * 1. Presence. Every execute request sent by a notebook this extension watches
 *    carries `metadata.nbmagic = {frontend, protocol}` next to JupyterLab's own
 *    `metadata.cellId`, so the kernel knows, inside that very cell, that cells can
 *    be inserted. (A hello/ready comm exchange at `%load_ext nbmagic` time is the
 *    second signal; it is read by the kernel once the cell has finished.)
 * 2. Delivery. The kernel opens a comm on target "nbmagic" with
 *    `{type: "deliver", cell_id, session}`, sends one `{type: "cell", cell}`
 *    message per accepted cell, then `{type: "done"}`. Only the browser tab whose
 *    kernel connection sent the execute request (header.session) acts on it.
 *    Cells go after the cell with `cell_id`, each one after the previous one.
 * 3. Closing. On "done" this side closes the comm with `{inserted: n}`.
 * 4. Removal (`%agent undo`). A comm opened with `{type: "remove", session,
 *    cells: [{id, source}], force}` removes each listed cell whose source is
 *    still what the kernel sent; a cell the user edited since is kept unless
 *    `force`. This side answers `{type: "removed", removed, edited, missing}`
 *    (ids) and closes the comm. Inserted cells keep the ids the kernel gave
 *    them, so the kernel can address them later.
 */

import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { JSONObject } from '@lumino/coreutils';

const TARGET = 'nbmagic';
const PROTOCOL = 1;
const VERSION = '0.1.0';

/** Kernel connections already wired (a connection survives kernel restarts). */
const wired = new WeakSet<Kernel.IKernelConnection>();

type CellJSON = {
  id?: string;
  cell_type: 'code' | 'markdown' | 'raw';
  source: string | string[];
  metadata?: JSONObject;
  outputs?: JSONObject[];
  execution_count?: number | null;
  attachments?: JSONObject;
};

function joinSource(source: string | string[] | undefined): string {
  if (Array.isArray(source)) {
    return source.join('');
  }
  return source ?? '';
}

/** One kernel-side run: remembers where the next cell goes. */
class Delivery {
  constructor(
    private kernel: Kernel.IKernelConnection,
    private anchorId: string | null,
    private tracker: INotebookTracker
  ) {}

  count = 0;
  private lastId: string | null = null;

  /** Notebooks showing this kernel (usually one). */
  private panels(): NotebookPanel[] {
    return panelsOf(this.tracker, this.kernel);
  }

  /** The notebook and index after which the next cell goes. */
  private locate(): { panel: NotebookPanel; index: number } | null {
    const panels = this.panels();
    for (const id of [this.lastId, this.anchorId]) {
      if (!id) {
        continue;
      }
      for (const panel of panels) {
        const cells = panel.content.model?.sharedModel.cells ?? [];
        const index = cells.findIndex(c => c.getId() === id);
        if (index >= 0) {
          return { panel, index };
        }
      }
    }
    // The anchor cell was deleted meanwhile: append rather than lose the cell.
    const panel = panels[0];
    const model = panel?.content.model;
    return panel && model
      ? { panel, index: model.sharedModel.cells.length - 1 }
      : null;
  }

  insert(cell: CellJSON): void {
    const where = this.locate();
    if (!where) {
      console.warn('nbmagic: no notebook shows this kernel; cell dropped');
      return;
    }
    const shared = where.panel.content.model!.sharedModel;
    const fresh: any = {
      id: cell.id,
      cell_type: cell.cell_type,
      source: joinSource(cell.source),
      metadata: cell.metadata ?? {}
    };
    if (cell.cell_type === 'code') {
      fresh.outputs = cell.outputs ?? [];
      fresh.execution_count = cell.execution_count ?? null;
    } else if (cell.attachments) {
      fresh.attachments = cell.attachments;
    }
    const inserted = shared.insertCell(where.index + 1, fresh);
    this.lastId = inserted.getId();
    this.count += 1;
  }
}

/** Notebooks showing `kernel`. */
function panelsOf(
  tracker: INotebookTracker,
  kernel: Kernel.IKernelConnection
): NotebookPanel[] {
  return tracker.filter(panel => {
    const k = panel.sessionContext.session?.kernel;
    return !!k && (k === kernel || k.id === kernel.id);
  });
}

/** `%agent undo`: remove the listed cells that are unchanged; report the rest. */
function removeCells(
  tracker: INotebookTracker,
  kernel: Kernel.IKernelConnection,
  cells: { id: string; source: string }[],
  force: boolean
): { removed: string[]; edited: string[]; missing: string[] } {
  const removed: string[] = [];
  const edited: string[] = [];
  const missing: string[] = [];
  const panels = panelsOf(tracker, kernel);
  for (const want of cells) {
    let found = false;
    for (const panel of panels) {
      const shared = panel.content.model?.sharedModel;
      if (!shared) {
        continue;
      }
      const index = shared.cells.findIndex(c => c.getId() === want.id);
      if (index < 0) {
        continue;
      }
      found = true;
      if (!force && shared.cells[index].getSource() !== want.source) {
        edited.push(want.id);
      } else {
        shared.deleteCell(index);
        removed.push(want.id);
      }
      break;
    }
    if (!found) {
      missing.push(want.id);
    }
  }
  return { removed, edited, missing };
}

function onCommOpen(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  kernel: Kernel.IKernelConnection,
  comm: Kernel.IComm,
  msg: KernelMessage.ICommOpenMsg
): void {
  const data = (msg.content.data ?? {}) as JSONObject;
  if (data.type === 'hello') {
    comm.send({
      type: 'ready',
      protocol: PROTOCOL,
      version: VERSION,
      app: app.name
    });
    return;
  }
  if (data.type !== 'deliver' && data.type !== 'remove') {
    return;
  }
  const session =
    (data.session as string | undefined) ??
    (msg.parent_header as any)?.session;
  if (session && session !== kernel.clientId) {
    return; // another tab (or another client) ran the cell
  }
  if (data.type === 'remove') {
    let answer = { removed: [] as string[], edited: [] as string[], missing: [] as string[] };
    try {
      answer = removeCells(
        tracker,
        kernel,
        (data.cells ?? []) as unknown as { id: string; source: string }[],
        !!data.force
      );
    } catch (err) {
      console.error('nbmagic: could not remove cells', err);
    }
    comm.send({ type: 'removed', ...answer });
    comm.close({ type: 'closed' });
    return;
  }
  const run = new Delivery(
    kernel,
    (data.cell_id as string | null) ?? null,
    tracker
  );
  comm.onMsg = (m: KernelMessage.ICommMsgMsg) => {
    const body = (m.content.data ?? {}) as JSONObject;
    if (body.type === 'cell') {
      try {
        run.insert(body.cell as unknown as CellJSON);
      } catch (err) {
        console.error('nbmagic: could not insert a cell', err);
      }
    } else if (body.type === 'done') {
      comm.close({ type: 'closed', inserted: run.count });
    }
  };
}

function wire(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  kernel: Kernel.IKernelConnection | null | undefined
): void {
  if (!kernel || wired.has(kernel)) {
    return;
  }
  wired.add(kernel);
  kernel.registerCommTarget(TARGET, (comm, msg) =>
    onCommOpen(app, tracker, kernel, comm, msg)
  );
  // Mark every execute request so the kernel knows, inside the running cell,
  // that this frontend can take cells (see the protocol note at the top).
  const original = kernel.requestExecute.bind(kernel);
  (kernel as any).requestExecute = (
    content: KernelMessage.IExecuteRequestMsg['content'],
    disposeOnDone?: boolean,
    metadata?: JSONObject
  ) =>
    original(content, disposeOnDone, {
      ...(metadata ?? {}),
      nbmagic: { frontend: VERSION, protocol: PROTOCOL }
    });
}

function watch(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  panel: NotebookPanel
): void {
  const context = panel.sessionContext;
  const current = () => wire(app, tracker, context.session?.kernel);
  current();
  context.kernelChanged.connect((_, change) =>
    wire(app, tracker, change.newValue)
  );
  context.statusChanged.connect(current);
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nbmagic:live-cells',
  description:
    'Inserts cells sent by the nbmagic kernel extension below the executing cell.',
  autoStart: true,
  requires: [INotebookTracker],
  activate: (app: JupyterFrontEnd, tracker: INotebookTracker) => {
    tracker.forEach(panel => watch(app, tracker, panel));
    tracker.widgetAdded.connect((_, panel) => watch(app, tracker, panel));
  }
};

export default plugin;
