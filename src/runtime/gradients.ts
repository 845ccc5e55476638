import { tf } from './backend.js';

/**
 * Kernel gradients for the reference run's tfjs autograd. tfjs-core registers its gradients from
 * per-file ES modules that Node cannot load from the package's dist (extensionless imports), so the
 * few kernels the reference differentiates through are registered here, from their textbook rules.
 */
type G = tf.Tensor;

function sumTo(dy: G, shape: number[]): G {
  const axes = tf.backend_util.getReductionAxes(shape, dy.shape);
  return tf.reshape(axes.length ? tf.sum(dy, axes) : dy, shape);
}

function expandBack(dy: G, x: G, axis: number | number[] | undefined): G {
  const axes = tf.util.parseAxisParam(axis ?? x.shape.map((_, i) => i), x.shape);
  const shape = x.shape.map((s, i) => (axes.includes(i) ? 1 : s));
  return tf.mul(tf.reshape(dy, shape), tf.onesLike(x));
}

const configs: tf.GradConfig[] = [
  { kernelName: 'Add', inputsToSave: ['a', 'b'], gradFunc: (dy, [a, b]) => ({ a: () => sumTo(dy as G, a.shape), b: () => sumTo(dy as G, b.shape) }) },
  { kernelName: 'Sub', inputsToSave: ['a', 'b'], gradFunc: (dy, [a, b]) => ({ a: () => sumTo(dy as G, a.shape), b: () => tf.neg(sumTo(dy as G, b.shape)) }) },
  { kernelName: 'Multiply', inputsToSave: ['a', 'b'], gradFunc: (dy, [a, b]) => ({ a: () => sumTo(tf.mul(dy as G, b), a.shape), b: () => sumTo(tf.mul(dy as G, a), b.shape) }) },
  {
    kernelName: 'RealDiv', inputsToSave: ['a', 'b'],
    gradFunc: (dy, [a, b]) => ({ a: () => sumTo(tf.div(dy as G, b), a.shape), b: () => sumTo(tf.neg(tf.div(tf.mul(dy as G, a), tf.mul(b, b))), b.shape) }),
  },
  { kernelName: 'Cast', gradFunc: (dy) => ({ x: () => tf.clone(dy as G) }) },
  { kernelName: 'Neg', gradFunc: (dy) => ({ x: () => tf.neg(dy as G) }) },
  { kernelName: 'Exp', outputsToSave: [true], gradFunc: (dy, [y]) => ({ x: () => tf.mul(dy as G, y) }) },
  { kernelName: 'Tanh', outputsToSave: [true], gradFunc: (dy, [y]) => ({ x: () => tf.mul(dy as G, tf.sub(1, tf.mul(y, y))) }) },
  { kernelName: 'Sigmoid', outputsToSave: [true], gradFunc: (dy, [y]) => ({ x: () => tf.mul(dy as G, tf.mul(y, tf.sub(1, y))) }) },
  { kernelName: 'Relu', inputsToSave: ['x'], gradFunc: (dy, [x]) => ({ x: () => tf.mul(dy as G, tf.step(x)) }) },
  { kernelName: 'Rsqrt', inputsToSave: ['x'], gradFunc: (dy, [x]) => ({ x: () => tf.mul(dy as G, tf.div(tf.mul(-0.5, tf.rsqrt(x)), x)) }) },
  { kernelName: 'Reshape', inputsToSave: ['x'], gradFunc: (dy, [x]) => ({ x: () => tf.reshape(dy as G, x.shape) }) },
  {
    kernelName: 'Transpose',
    gradFunc: (dy, _s, attrs) => {
      const perm = (attrs as { perm: number[] }).perm;
      const inv = perm.map((_, i) => perm.indexOf(i));
      return { x: () => tf.transpose(dy as G, inv) };
    },
  },
  { kernelName: 'Reverse', gradFunc: (dy, _s, attrs) => ({ x: () => tf.reverse(dy as G, (attrs as { dims: number[] }).dims) }) },
  { kernelName: 'Sum', inputsToSave: ['x'], gradFunc: (dy, [x], attrs) => ({ x: () => expandBack(dy as G, x, (attrs as { axis: number[] }).axis) }) },
  {
    kernelName: 'Mean', inputsToSave: ['x'],
    gradFunc: (dy, [x], attrs) => {
      const axes = tf.util.parseAxisParam((attrs as { axis: number[] }).axis, x.shape);
      const n = axes.reduce((s, a) => s * x.shape[a], 1);
      return { x: () => tf.div(expandBack(dy as G, x, axes), n) };
    },
  },
  {
    kernelName: 'BatchMatMul', inputsToSave: ['a', 'b'],
    gradFunc: (dy, [a, b], attrs) => {
      const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
      const d = dy as G;
      if (!transposeA && !transposeB) return { a: () => tf.matMul(d, b, false, true), b: () => tf.matMul(a, d, true, false) };
      if (!transposeA && transposeB) return { a: () => tf.matMul(d, b, false, false), b: () => tf.matMul(d, a, true, false) };
      if (transposeA && !transposeB) return { a: () => tf.matMul(b, d, false, true), b: () => tf.matMul(a, d, false, false) };
      return { a: () => tf.matMul(b, d, true, true), b: () => tf.matMul(d, a, true, true) };
    },
  },
];

let done = false;

export function registerReferenceGradients(): void {
  if (done) return;
  done = true;
  for (const c of configs) if (!tf.getGradient(c.kernelName)) tf.registerGradient(c);
}
