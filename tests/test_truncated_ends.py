"""A dataset that ends in a time-limit truncation: its last transition has a real s' but no recorded a'
(offrl.data.dataset holds a placeholder there). The algorithms whose backups read the dataset's next
action drop that transition, as their references do (ARQ: the SARSA epoch of ARQ-public; Onestep:
onestep-rl's d4rl_to_replay.py), so their Q step on the whole dataset equals their Q step on the
dataset without it, whatever the placeholder holds."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from configs.arq import get_config as arq_config
from offrl.algos import Spec, arq, onestep
from conftest import assert_trees_close, trees_differ
from offrl.data.dataset import WHOLE_DATASET, episodes_to_transitions, sample, to_device

OBS, ACT = 3, 2


def _episode(rng, t, terminated):
    term, trunc = np.zeros(t, bool), np.zeros(t, bool)
    (term if terminated else trunc)[-1] = True
    return dict(observations=rng.normal(size=(t + 1, OBS)), actions=rng.uniform(-0.9, 0.9, size=(t, ACT)),
                rewards=rng.normal(size=t), terminations=term, truncations=trunc)


def timeout_dataset():
    """Episode 0 ends in a terminal, episode 1 (the dataset's last rows) in a timeout."""
    rng = np.random.default_rng(0)
    arrays, _, _ = episodes_to_transitions([_episode(rng, 3, True), _episode(rng, 4, False)])
    data = to_device(arrays)
    assert np.flatnonzero(np.asarray(data.timeouts)).tolist() == [data.size - 1]
    assert np.flatnonzero(np.asarray(data.terminals)).tolist() == [2]
    return data


def _without_last(data):
    return jax.tree_util.tree_map(lambda x: x[:-1], data)


def _with_placeholder(data, value):
    return data._replace(next_actions=data.next_actions.at[-1].set(value))


def test_arq_q_step_drops_the_truncated_last_transition():
    cfg = arq_config()
    ag = cfg.agent
    ag.score_hidden_dims, ag.critic_hidden_dims, ag.actor_hidden_dims = (8,), (8,), (8,)
    ag.num_candidates, ag.kth = 3, 2
    data = timeout_dataset()
    state = arq.init(jax.random.PRNGKey(1), Spec(OBS, ACT), cfg)
    state = state.replace(critic_target=jax.tree_util.tree_map(lambda p: 0.8 * p + 0.1, state.critic_target),
                          threshold=jnp.asarray(-5.0))
    rng = np.random.default_rng(2)
    table, at_next = arq.support_rows(data)
    m = len(table)
    state = state.replace(support=arq.Support(jnp.asarray(at_next), jnp.asarray(rng.uniform(-1, 1, (m, 3, ACT)), jnp.float32),
                                              jnp.asarray(rng.choice([-9.0, -1.0], (m, 3)), jnp.float32)))

    def step(d):
        batch = sample(jax.random.PRNGKey(0), d, WHOLE_DATASET)  # every row once; index = its dataset row
        return arq.q_update(state, batch, jax.random.PRNGKey(3), 0, cfg)

    full, m_full = step(data)
    kept, m_kept = step(_without_last(data))
    np.testing.assert_allclose(float(m_full["critic_loss"]), float(m_kept["critic_loss"]), rtol=1e-5)
    assert_trees_close(full.critic.params, kept.critic.params)
    # the placeholder, however large, reaches nothing: a data next action elsewhere does
    wild, _ = step(_with_placeholder(data, 50.0))
    assert_trees_close(full.critic.params, wild.critic.params)
    moved, _ = step(data._replace(next_actions=data.next_actions.at[0].set(50.0)))
    assert trees_differ(full.critic.params, moved.critic.params)


def test_onestep_sarsa_step_drops_the_truncated_last_transition():
    ag = onestep.default_agent_config()
    ag.hidden_dims, ag.q_hidden_dims = (5,), (5,)
    assert ag.drop_timeouts  # the reference's replay has no timeout rows
    cfg = ml_collections.ConfigDict(dict(discount=0.9, agent=ag))
    state = onestep.init(jax.random.PRNGKey(0), Spec(OBS, ACT), cfg)
    state = state.replace(critic_target=jax.tree_util.tree_map(lambda p: 0.8 * p + 0.1, state.critic.params))
    data = timeout_dataset()

    def grad(d):
        return jax.grad(lambda p: onestep.q_loss(p, state, d, cfg)[0])(state.critic.params), onestep.q_loss(
            state.critic.params, state, d, cfg)[0]

    g_full, l_full = grad(data)
    g_kept, l_kept = grad(_without_last(data))
    np.testing.assert_allclose(float(l_full), float(l_kept), rtol=1e-5)
    assert_trees_close(g_full, g_kept)
    assert_trees_close(grad(_with_placeholder(data, 50.0))[0], g_full)
    ag.drop_timeouts = False  # the switch reads the placeholder as a'
    assert trees_differ(grad(_with_placeholder(data, 50.0))[0], grad(data)[0])
