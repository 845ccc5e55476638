// Which plans each training engine can express: data (capabilities.ts) and the rules that read it.
// A leaf over mesh/model/layout/lower: the search filters by it, the exports refuse by it.
export { asRunBy, CAPABILITIES, ENGINES, isEngine, isRowEngine, ROW_ENGINES, runSemantics, type RowEngine, type RunSemantics, llama3Ffn, TORCHTITAN_MODELS, type Capabilities, type Engine, type TorchtitanModel } from './capabilities.js';
export { engineFilter, engineLayoutFilter, iciSizes, modelProblems, torchtitanModel, whyNot, type SliceInfo } from './rules.js';
export { MAXTEXT_FREE_AXES, MAXTEXT_MESH_AXES, maxtextKinds, type MaxtextAxis } from './maxtext.js';
export { axesWith, shapeOf, TENSOR_DIMS, type AxisRole, type AxisUse, type PlanShape } from './shape.js';
export { capabilityTable } from './table.js';
export { BEGIN as README_BEGIN, END as README_END, engineSection, type FixtureHead } from './readme.js';
