#!/usr/bin/env python3
"""Refresh test/fixtures/engines/*.json from the engines' own source.

Usage: python3 scripts/engine-fixtures.py MIRROR_ROOT
where MIRROR_ROOT holds bare clones named owner+name/repo (what the `fetch` tool writes).
Reads files at each clone's HEAD with `git show` and writes names only (keys, flags,
enum values, parameter names): no code is carried over.
"""
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else '/work/.mirror')
OUT = Path(__file__).resolve().parent.parent / 'test' / 'fixtures' / 'engines'


def git(repo, *args):
    return subprocess.run(['git', '-C', str(ROOT / repo / 'repo'), *args], check=True, capture_output=True, text=True).stdout


def show(repo, path):
    return git(repo, 'show', f'HEAD:{path}')


def head(repo):
    return git(repo, 'log', '-1', '--format=%H %cI').split()


def header(repo, github, files):
    commit, date = head(repo)
    return {'engine_repo': github, 'commit': commit, 'commit_date': date, 'files': files}


def classes(src):
    return {n.name: n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.ClassDef)}


def fields(cls):
    """Annotated class attributes (dataclass / pydantic fields)."""
    return [s.target.id for s in cls.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)]


def init_params(cls):
    for s in cls.body:
        if isinstance(s, ast.FunctionDef) and s.name == '__init__':
            a = s.args
            return [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg != 'self']
    return []


def func_params(fn):
    a = fn.args
    return [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]


def enum_values(cls):
    out = []
    for s in cls.body:
        if isinstance(s, ast.Assign) and isinstance(s.value, ast.Constant) and isinstance(s.value.value, str):
            out.append(s.value.value)
    return out


def literal_choices(cls, name):
    """The values of a Literal[...] annotation of field `name`."""
    for s in cls.body:
        if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name) and s.target.id == name:
            return [c.value for c in ast.walk(s.annotation) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
    return []


def write(name, data):
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f'{name}.json').write_text(json.dumps(data, indent=1, sort_keys=False) + '\n')
    print(f'wrote {name}.json')


# ---------------------------------------------------------------- MaxText
def maxtext():
    repo = 'AI-Hypercomputer+maxtext'
    base = show(repo, 'src/maxtext/configs/base.yml')
    types_src = show(repo, 'src/maxtext/configs/types.py')
    dec = show(repo, 'src/maxtext/layers/decoders.py')
    common = show(repo, 'src/maxtext/common/common_types.py')
    keys = sorted(set(re.findall(r'^([a-z_][a-z0-9_]*):', base, re.M)) | {'base_config'})
    mesh_axes = ast.literal_eval(re.search(r'^mesh_axes: (\[.*\])', base, re.M).group(1))
    rules_text = base[base.index('logical_axis_rules: ['):base.index('data_sharding:')]
    logical = sorted(set(re.findall(r"\[\s*['\"]([a-z_0-9]+)['\"]\s*,", rules_text)))
    # remat policies: the strings get_remat_policy compares cfg.remat_policy with.
    body = dec[dec.index('def get_remat_policy'):dec.index('def get_decoder_layers')]
    compared = re.findall(r'cfg\.remat_policy (?:==|!=|in) (\([^)]*\)|"[a-z_]+")', body)
    remat = sorted({v for c in compared for v in re.findall(r'"([a-z_]+)"', c)})
    cl = classes(types_src)
    cc = classes(common)
    write('maxtext', {
        **header(repo, 'AI-Hypercomputer/maxtext', ['src/maxtext/configs/base.yml', 'src/maxtext/configs/types.py', 'src/maxtext/configs/pyconfig.py', 'src/maxtext/layers/decoders.py', 'src/maxtext/common/common_types.py']),
        'note': 'pyconfig raises on a key that is not a field of MaxTextConfig; base.yml lists them all. base_config names the file to inherit.',
        'keys': keys,
        'enums': {
            'mesh_axes': mesh_axes,
            'logical_axis_names': logical,
            'remat_policy': remat,
            'dtype': enum_values(cl['DType']),
            'decoder_block': enum_values(cc['DecoderBlockType']),
        },
    })


# ---------------------------------------------------------------- torchtitan
def torchtitan():
    repo = 'pytorch+torchtitan'
    cfg = classes(show(repo, 'torchtitan/config/configs.py'))
    ac = show(repo, 'torchtitan/distributed/activation_checkpoint.py')
    registry = show(repo, 'torchtitan/models/llama3/config_registry.py')
    init = show(repo, 'torchtitan/models/llama3/__init__.py')
    flags = ['--module', '--config']
    for section, cls in [('training', 'TrainingConfig'), ('parallelism', 'ParallelismConfig'), ('compile', 'CompileConfig'), ('comm', 'CommConfig'), ('debug', 'DebugConfig')]:
        flags += [f'--{section}.{f}' for f in fields(cfg[cls])]
        # tyro's negation of a boolean field (--section.no_field), for those that default to True
        flags += [f'--{section}.no_{s.target.id}' for s in cfg[cls].body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
                  and ast.unparse(s.annotation) == 'bool' and s.value is not None and ast.unparse(s.value) == 'True']
    subcommands = re.findall(r'tyro\.conf\.subcommand\("([a-z-]+)"\)', ac)
    def registry_configs(registry):
        # config functions of a registry and the flavor each builds its model from
        configs = {}
        for m in re.finditer(r'^def (\w+)\(\) -> Trainer\.Config:\n(.*?)(?=^def |\Z)', registry, re.M | re.S):
            f = re.search(r'model_registry\(\s*"([^"]+)"', m.group(2))
            derived = re.search(r'config = (\w+)\(\)', m.group(2))
            configs[m.group(1)] = f.group(1) if f else (configs.get(derived.group(1)) if derived else None)
        return configs
    configs = registry_configs(registry)
    flavors = {}
    for m in re.finditer(r'^def _(\w+)\(\s*attn_backend.*?\n(.*?)(?=^def |\Z)', init, re.M | re.S):
        b = m.group(2)
        num = lambda k: int(re.search(rf'\b{k} = (\d+)', b).group(1)) if re.search(rf'\b{k} = (\d+)', b) else None
        mult = re.search(r'multiple_of=(\d+)(?:, ffn_dim_multiplier=([\d.]+))?', b)
        flavors[m.group(1)] = {
            'dim': num('dim'), 'n_layers': num('n_layers'), 'n_heads': num('n_heads'), 'n_kv_heads': num('n_kv_heads'),
            'vocab_size': num('vocab_size') or int(re.search(r'vocab_size=(\d+)', b).group(1)),
            'multiple_of': int(mult.group(1)) if mult else None, 'ffn_dim_multiplier': float(mult.group(2)) if mult and mult.group(2) else None,
            'weight_tying': 'enable_weight_tying=True' in b,
        }
    names = dict(re.findall(r'^\s+"([\w.]+)": _(\w+),$', init, re.M))
    # qwen3: flavor functions set dim/head_dim/n_layers/vocab_size as locals and the rest as keyword arguments
    q_init = show(repo, 'torchtitan/models/qwen3/__init__.py')
    q_configs = registry_configs(show(repo, 'torchtitan/models/qwen3/config_registry.py'))
    q_flavors = {}
    for m in re.finditer(r'^def _(\w+)\(\s*attn_backend.*?\n(.*?)(?=^def |\Z)', q_init, re.M | re.S):
        b = m.group(2)
        def val(k, b=b):
            v = re.search(rf'\b{k} ?= ?(\d+)\b', b)
            return int(v.group(1)) if v else None
        q_flavors[m.group(1)] = {k: val(k) for k in ['dim', 'n_layers', 'n_heads', 'n_kv_heads', 'head_dim', 'hidden_dim', 'moe_hidden_dim', 'num_experts', 'top_k', 'vocab_size']}
        q_flavors[m.group(1)]['weight_tying'] = 'enable_weight_tying=True' in b
        q_flavors[m.group(1)]['moe'] = '_build_qwen3_moe_layers(' in b
    q_names = dict(re.findall(r'^\s+"([\w.-]+)": _(\w+),$', q_init, re.M))
    dims = show(repo, 'torchtitan/distributed/parallel_dims.py')
    write('torchtitan', {
        **header(repo, 'pytorch/torchtitan', ['torchtitan/config/configs.py', 'torchtitan/config/manager.py', 'torchtitan/trainer.py', 'torchtitan/distributed/activation_checkpoint.py', 'torchtitan/models/llama3/__init__.py', 'torchtitan/models/llama3/config_registry.py', 'torchtitan/models/qwen3/__init__.py', 'torchtitan/models/qwen3/config_registry.py', 'torchtitan/distributed/parallel_dims.py']),
        'note': 'CLI: --module/--config pick a config function; --section.option flags override it; boolean fields are flags (--section.field, tyro negation --section.no_field); activation checkpointing is a tyro subcommand activation-checkpoint:NAME. model_spec is off the CLI (tyro.conf.Suppress).',
        'flags': flags,
        'subcommands': {'activation-checkpoint': subcommands},
        'enums': {
            '--parallelism.fsdp_reshard_after_forward': literal_choices(cfg['ParallelismConfig'], 'fsdp_reshard_after_forward'),
            '--training.dtype': literal_choices(cfg['TrainingConfig'], 'dtype'),
            '--training.mixed_precision_param': literal_choices(cfg['TrainingConfig'], 'mixed_precision_param'),
            # torch.distributed.pipelining schedule names torchtitan's own configs and tests use
            '--parallelism.pipeline_parallel_schedule': ['1F1B', 'GPipe', 'Interleaved1F1B', 'LoopedBFS', 'InterleavedZeroBubble', 'ZBVZeroBubble', 'DualPipeV'],
        },
        'llama3': {
            'module': 'torchtitan.models.llama3',
            'configs': configs,
            'flavors': {name: flavors[fn] for name, fn in names.items() if fn in flavors},
            'ffn_hidden_dim': 'compute_ffn_hidden_dim: int(8*dim/3), times ffn_dim_multiplier, rounded up to multiple_of',
            'activation': 'swiglu', 'positions': 'rotary', 'norm': 'rmsnorm',
        },
        'qwen3': {
            'module': 'torchtitan.models.qwen3',
            'configs': q_configs,
            'flavors': {name: q_flavors[fn] for name, fn in q_names.items() if fn in q_flavors},
            'activation': 'swiglu', 'positions': 'rotary', 'norm': 'rmsnorm, and on each head of q and k (qk_norm)',
            'routing': 'router score_func softmax, route_norm True, top_k; token dispatcher without a capacity factor unless non_blocking_capacity_factor is given (dropless)',
        },
        'expert_parallel': {
            # parallel_dims.py _validate and build_mesh, quoted
            'rule': re.search(r'sparse_region = (.*)', dims).group(1).strip(),
            'check': re.search(r'if (sparse_region % ep != 0):', dims).group(1),
            'efsdp': re.search(r'efsdp = (fsdp \* self\.tp // self\.ep)', dims).group(1),
            'sparse_mesh': re.search(r'\(("pp", "dp_replicate", "efsdp", "ep")\),', dims).group(1),
        },
    })


# ---------------------------------------------------------------- DeepSpeed
def deepspeed():
    repo = 'deepspeedai+DeepSpeed'
    consts = show(repo, 'deepspeed/runtime/constants.py')
    zero = classes(show(repo, 'deepspeed/runtime/zero/config.py'))
    tp = classes(show(repo, 'deepspeed/runtime/tensor_parallel/config.py'))
    prec = classes(show(repo, 'deepspeed/runtime/precision_config.py'))
    config = show(repo, 'deepspeed/runtime/config.py')
    autoep = show(repo, 'deepspeed/module_inject/auto_ep_config.py')
    # config.py's own section names (EXPERT_PARALLEL = "expert_parallel") beside constants.py's
    top = sorted(set(re.findall(r'^[A-Z_]+ = ["\']([a-z_0-9]+)["\']$', consts, re.M))
                 | set(re.findall(r'^EXPERT_PARALLEL = ["\']([a-z_0-9]+)["\']$', config, re.M))
                 | {'zero_optimization', 'tensor_parallel', 'bf16', 'fp16', 'activation_checkpointing'})
    # the keys parse_autoep_config reads from the expert_parallel section
    parse = autoep[autoep.index('def parse_autoep_config'):autoep.index('def validate_autoep_config')]
    ep_keys = sorted(set(re.findall(r'param_dict\.get\("([a-z_0-9]+)"', parse)) | set(re.findall(r'"([a-z_0-9]+)" in param_dict', parse)))
    write('deepspeed', {
        **header(repo, 'deepspeedai/DeepSpeed', ['deepspeed/runtime/constants.py', 'deepspeed/runtime/config.py', 'deepspeed/runtime/zero/config.py', 'deepspeed/runtime/tensor_parallel/config.py', 'deepspeed/runtime/precision_config.py', 'deepspeed/module_inject/auto_ep_config.py', 'version.txt']),
        'version': show(repo, 'version.txt').strip(),
        'note': 'DeepSpeedConfig._batch_assertion: train_batch_size == train_micro_batch_size_per_gpu * gradient_accumulation_steps * world_size, where world_size is dist.get_world_size() when no mpu or mesh is passed (AutoTP training), i.e. every rank, TP ranks included (deepspeedai/DeepSpeed#7298).',
        'keys': top,
        'sections': {
            'zero_optimization': fields(zero['DeepSpeedZeroConfig']),
            'tensor_parallel': fields(tp['TPTrainingConfig']),
            'bf16': fields(prec['DeepSpeedBF16Config']) if 'DeepSpeedBF16Config' in prec else ['enabled'],
            'fp16': fields(prec['DeepSpeedFP16Config']) if 'DeepSpeedFP16Config' in prec else ['enabled'],
            'expert_parallel': ep_keys,
        },
        'autoep_note': 'auto_ep_folding.py build_folding_spec: autoep_size x expert_tensor_parallel_size divides the stage size (world / pp); expert groups are runs of autoep_size consecutive ranks; expert_tensor_parallel_size must be 1; AutoTP with ZeRO 3 is refused. validate_autoep_post_detection: num_experts % autoep_size == 0. engine.py _validate_zero3_moe_compatibility: native deepspeed.moe.layer.MoE is refused with ZeRO 3, AutoEP layers are not.',
        'enums': {'zero_optimization.stage': [0, 1, 2, 3]},
    })


# ---------------------------------------------------------------- t5x
def t5x():
    repo = 'google-research+t5x'
    part = classes(show(repo, 't5x/partitioning.py'))
    trainer = classes(show(repo, 't5x/trainer.py'))
    dec = classes(show(repo, 't5x/examples/decoder_only/network.py'))
    s5 = classes(show(repo, 't5x/examples/scalable_t5/network.py'))
    pretrain = show(repo, 't5x/configs/runs/pretrain.gin')
    models = [show(repo, 't5x/examples/decoder_only/models/base.gin'), show(repo, 't5x/examples/scalable_t5/t5_1_1/base.gin')]
    macros = sorted(set(re.findall(r'^([A-Z_]+) = ', pretrain + ''.join(models), re.M)))
    write('t5x', {
        **header(repo, 'google-research/t5x', ['t5x/partitioning.py', 't5x/trainer.py', 't5x/configs/runs/pretrain.gin', 't5x/examples/decoder_only/models/base.gin', 't5x/examples/scalable_t5/t5_1_1/base.gin', 't5x/examples/decoder_only/network.py', 't5x/examples/scalable_t5/network.py']),
        'note': 'default_mesh has a default TPU v2/v3 mesh only for num_partitions 1, 2, 4, 8, 16; ici_mesh_shape with dcn_mesh_shape builds a (replica, data, model) mesh whose data axis is (replica, data). BasePartitioner needs num_partitions or model_parallel_submesh set.',
        'configurables': {
            'partitioning.PjitPartitioner': init_params(part['PjitPartitioner']),
            'trainer.Trainer': init_params(trainer['Trainer']),
            'decoder_only.network.TransformerConfig': fields(dec['TransformerConfig']),
            'scalable_t5.network.T5Config': fields(s5['T5Config']),
        },
        'includes': ['t5x/configs/runs/pretrain.gin', 't5x/examples/decoder_only/models/base.gin', 't5x/examples/scalable_t5/t5_1_1/base.gin'],
        'macros': macros,
        'enums': {
            'default_mesh_num_partitions_tpu_v2_v3': [1, 2, 4, 8, 16],
            'mesh_axis_names': ['replica', 'data', 'model'],
            'scalable_t5.network.T5Config.remat_policy': ['none', 'minimal', 'full'],
        },
    })


# ---------------------------------------------------------------- Mesh-TF
def mesh_tf():
    repo = 'tensorflow+mesh'
    out = {}
    files = ['mesh_tensorflow/transformer/utils.py', 'mesh_tensorflow/transformer/transformer.py', 'mesh_tensorflow/transformer/transformer_layers.py']
    for path in files:
        module = path[:-3].replace('/', '.')
        for node in ast.walk(ast.parse(show(repo, path))):
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                continue
            if not any('gin' in ast.unparse(d) and 'configurable' in ast.unparse(d) for d in node.decorator_list):
                continue
            params = init_params(node) if isinstance(node, ast.ClassDef) else func_params(node)
            out[f'{module}.{node.name}'] = params
    defaults = show(repo, 'mesh_tensorflow/transformer/gin/defaults.gin')
    write('mesh-tf', {
        **header(repo, 'tensorflow/mesh', files + ['mesh_tensorflow/transformer/gin/defaults.gin', 'mesh_tensorflow/layers.py', 'mesh_tensorflow/ops.py']),
        'note': 'gin binds SCOPE/NAME.param where NAME is a suffix of module.function; defaults.gin is parsed first and sets tokens_per_microbatch_per_replica = 2048 and Unitransformer.max_length = 512.',
        'configurables': out,
        'macros': sorted(set(re.findall(r'^([a-z_]+) = ', defaults, re.M))),
        # the tensor dimension names the transformer's layers create (what layout rules can name)
        'dimension_names': sorted({n for path in files for n in re.findall(r'mtf\.Dimension\(\s*"(\w+)"', show(repo, path))}),
        'defaults': {
            'utils.serialize_num_microbatches.tokens_per_microbatch_per_replica': int(re.search(r'tokens_per_microbatch_per_replica = (\d+)', defaults).group(1)),
            'Unitransformer.max_length': int(re.search(r'Unitransformer\.max_length = (\d+)', defaults).group(1)),
        },
        # layers.dense_product: "linear" or getattr(mtf, name): the activations ops.py defines
        'enums': {'DenseReluDense.activation': ['linear'] + sorted(set(re.findall(r'^def (relu|gelu|swish|sigmoid|tanh|elu|selu|softplus)\(', show(repo, 'mesh_tensorflow/ops.py'), re.M)))},
    })


# ---------------------------------------------------------------- Megatron-LM
def megatron():
    repo = 'NVIDIA+Megatron-LM'
    args = show(repo, 'megatron/training/arguments.py')
    flags = set(re.findall(r"add_argument\(\s*'(--[a-z0-9-]+)'", args)) | set(re.findall(r"add_argument\(\s*\"(--[a-z0-9-]+)\"", args))
    # Flags generated from dataclasses by ArgumentGroupFactory: --field-name, --no-/--disable- for True booleans.
    config_files = ['megatron/core/model_parallel_config.py', 'megatron/core/transformer/transformer_config.py']
    config_files += [p for p in git(repo, 'ls-tree', '-r', '--name-only', 'HEAD', 'megatron/training/config').split() if p.endswith('.py')]
    factories = dict(re.findall(r"(\w+) = ArgumentGroupFactory\((\w+)", args)) | {'fi': 'FaultInjectorConfig'}
    excluded = set(re.findall(r'"([a-z_0-9]+)",?', args[args.index('def _add_network_size_args'):args.index('transformer_factory = ArgumentGroupFactory')]))
    all_cls = {}
    for p in config_files:
        all_cls.update(classes(show(repo, p)))

    def cls_fields(name):
        c = all_cls.get(name)
        if c is None:
            return []
        out = []
        for b in c.bases:
            out += cls_fields(ast.unparse(b).split('.')[-1])
        for s in c.body:
            if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name):
                default = ast.unparse(s.value) if s.value is not None else ''
                meta = re.findall(r"'arg_names':\s*\[([^\]]*)\]|\"arg_names\":\s*\[([^\]]*)\]", default)
                names = [n for grp in meta for part in grp for n in re.findall(r"'(--[a-z0-9-]+)'|\"(--[a-z0-9-]+)\"", part) for n in n if n] if meta else []
                lits = [c.value for c in ast.walk(s.annotation) if isinstance(c, ast.Constant) and isinstance(c.value, str)] if 'Literal' in ast.unparse(s.annotation) else []
                out.append((s.target.id, default, names, lits))
        return out

    literal = {}
    for cls in sorted(set(factories.values())):
        for name, default, names, lits in cls_fields(cls):
            if cls == 'TransformerConfig' and name in excluded:
                continue
            flag = '--' + name.replace('_', '-')
            flags |= set(names) if names else {flag}
            if lits:
                literal[flag] = lits
            if default.startswith('True') or 'default=True' in default:
                flags |= {'--no-' + name.replace('_', '-'), '--disable-' + name.replace('_', '-')}

    def choices(flag):
        m = re.search(re.escape(f"'{flag}'") + r"[^)]*?choices=\[([^\]]*)\]", args, re.S)
        return re.findall(r"'([^']*)'", m.group(1)) if m else []

    write('megatron', {
        **header(repo, 'NVIDIA/Megatron-LM', ['megatron/training/arguments.py', 'megatron/training/argument_utils.py'] + config_files),
        'note': 'validate_args: world_size % (tp * pp * cp) == 0, data_parallel_size = world_size / (tp * pp * cp), global_batch_size % (micro_batch_size * data_parallel_size) == 0; with cp > 1 seq_length % (2 * cp) == 0.',
        'flags': sorted(flags),
        'enums': {f: choices(f) or literal.get(f, []) for f in ['--position-embedding-type', '--recompute-granularity', '--recompute-method', '--data-parallel-sharding-strategy', '--ckpt-format', '--normalization', '--tokenizer-type'] if choices(f) or literal.get(f)},
    })


for f in (maxtext, torchtitan, deepspeed, t5x, mesh_tf, megatron):
    f()
