import { parentPort } from 'node:worker_threads';
import { lower } from '../lower/lower.js';
import { buildGraph } from '../model/graph.js';
import { initBackend } from './backend.js';
import { AbortedByPeer, SharedExchange } from './exchange.js';
import { DeviceFault, Executor } from './executor.js';
import type { ToWorker, FromWorker, DeviceState } from './threads.js';

/** One worker thread: runs whole simulated devices of a run, reaching the rest through shared memory. */
let ex: Executor | null = null;
let exchange: SharedExchange | null = null;
let backend = '';

const reply = (m: FromWorker, transfer: ArrayBuffer[] = []) => parentPort!.postMessage(m, transfer);

function states(): DeviceState[] {
  return ex!.mine.map((d) => ({ index: d.index, params: [...d.params], m: [...d.adamM], v: [...d.adamV] }));
}

async function handle(msg: ToWorker): Promise<void> {
  switch (msg.type) {
    case 'setup': {
      backend = await initBackend(msg.backend);
      exchange = new SharedExchange(msg.memory, msg.thread);
      ex = new Executor(lower(buildGraph(msg.spec), msg.mesh, msg.plan), { seed: msg.seed, adam: msg.adam, trace: msg.trace, exchange });
      reply({ type: 'ready', backend });
      return;
    }
    case 'step': {
      ex!.fault = msg.fault;
      const loss = ex!.step(msg.tokens);
      reply({ type: 'stepped', loss });
      return;
    }
    case 'load': {
      for (const s of msg.states) {
        const d = ex!.devices[s.index];
        for (const [k, v] of s.params) d.params.set(k, v);
        for (const [k, v] of s.m) d.adamM.set(k, v);
        for (const [k, v] of s.v) d.adamV.set(k, v);
      }
      ex!.stepIndex = msg.stepIndex;
      reply({ type: 'loaded' });
      return;
    }
    case 'report': {
      const sent = ex!.mine.map((d) => [d.index, [...d.sent]] as [number, [string, number][]]);
      reply({ type: 'report', states: msg.states ? states() : [], timings: [...ex!.timings], events: ex!.events.splice(0), sent });
      return;
    }
  }
}

parentPort!.on('message', (msg: ToWorker) => {
  handle(msg).catch((e: unknown) => {
    // Peers waiting on this thread's devices give up instead of hanging.
    exchange?.abort();
    if (e instanceof DeviceFault) reply({ type: 'error', fault: { device: e.device, op: e.op, step: e.step, detail: e.detail }, aborted: false, message: e.message });
    else reply({ type: 'error', aborted: e instanceof AbortedByPeer, message: (e as Error).stack ?? String(e) });
  });
});
