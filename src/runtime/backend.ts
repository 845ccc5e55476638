import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { InputError } from '../errors.js';

export type BackendChoice = 'auto' | 'wasm' | 'cpu' | 'tensorflow';
export const BACKENDS: readonly BackendChoice[] = ['auto', 'wasm', 'cpu', 'tensorflow'];

let wasmPathSet = false;

async function tryTensorflow(): Promise<boolean> {
  // Optional peer dependencies: absent in most checkouts, so imported by a computed name.
  for (const name of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      await import(name);
      if (await tf.setBackend('tensorflow')) return true;
    } catch {
      // not installed, or its native library would not load
    }
  }
  return false;
}

async function tryWasm(): Promise<boolean> {
  try {
    if (!wasmPathSet) {
      const require = createRequire(import.meta.url);
      // The package's main entry lives in dist/; the .wasm files sit beside it.
      const entry = require.resolve('@tensorflow/tfjs-backend-wasm');
      setWasmPaths(join(dirname(entry), '/'));
      wasmPathSet = true;
    }
    return await tf.setBackend('wasm');
  } catch {
    return false;
  }
}

/** Select the kernel backend; returns the name of the one in use. */
export async function initBackend(choice: BackendChoice = 'auto'): Promise<string> {
  if (!BACKENDS.includes(choice)) throw new InputError(`--backend must be one of ${BACKENDS.join(', ')}, got ${JSON.stringify(choice)}`);
  // tfjs greets Node users on stdout ("install our node backend"): stdout is for the answer.
  const { log, warn } = console;
  console.log = () => {};
  console.warn = () => {};
  let ok = false;
  try {
    if (choice === 'tensorflow') {
      ok = await tryTensorflow();
      if (!ok) throw new InputError('--backend tensorflow needs @tensorflow/tfjs-node-gpu or @tensorflow/tfjs-node, which is not installed');
    } else if (choice === 'auto') {
      ok = (await tryTensorflow()) || (await tryWasm()) || (await tf.setBackend('cpu'));
    } else if (choice === 'wasm') {
      ok = await tryWasm();
      if (!ok) throw new InputError('the wasm backend did not load (its .wasm files are in @tensorflow/tfjs-backend-wasm/dist)');
    } else {
      ok = await tf.setBackend('cpu');
    }
  } finally {
    console.log = log;
    console.warn = warn;
  }
  await tf.ready();
  return tf.getBackend();
}

export { tf };
