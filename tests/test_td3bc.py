"""TD3+BC critic and actor losses against a NumPy computation on fixed tiny parameters."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from conftest import np_mlp
from offrl.algos import Spec, td3bc
from offrl.data.dataset import Transitions


def _dense_layers(tree):
    mlp = tree["MLP_0"]
    return [(np.asarray(mlp[f"Dense_{i}"]["kernel"], np.float64), np.asarray(mlp[f"Dense_{i}"]["bias"], np.float64))
            for i in range(len(mlp))]


def _setup():
    cfg = ml_collections.ConfigDict(dict(discount=0.9, agent=td3bc.default_agent_config()))
    cfg.agent.hidden_dims = (4,)
    spec = Spec(3, 2)
    state = td3bc.init(jax.random.PRNGKey(1), spec, cfg)
    # targets differ from the online nets, so a loss that mixes them up fails
    def perturb(t):
        return jax.tree_util.tree_map(lambda x: x * 0.7 + 0.05, t)

    state = state.replace(actor_target=perturb(state.actor.params), critic_target=perturb(state.critic.params))
    rng = np.random.default_rng(0)
    b = 5
    batch = Transitions(
        observations=jnp.asarray(rng.normal(size=(b, 3)), jnp.float32),
        actions=jnp.asarray(rng.uniform(-1, 1, size=(b, 2)), jnp.float32),
        rewards=jnp.asarray(rng.normal(size=b), jnp.float32),
        next_observations=jnp.asarray(rng.normal(size=(b, 3)), jnp.float32),
        terminals=jnp.asarray([0, 1, 0, 0, 1], jnp.float32),
        timeouts=jnp.zeros(b), next_actions=jnp.zeros((b, 2)), returns=jnp.zeros(b),
        episode_ids=jnp.zeros(b, jnp.int32),
    )
    return cfg, state, batch


def _actor_np(params, obs):
    return np.tanh(np_mlp(_dense_layers(params["params"]), obs))


def _critics_np(params, obs, act):
    p = params["params"]["VmapCritic_0"]
    x = np.concatenate([obs, act], -1)
    return np.stack([np_mlp([(w[i], bb[i]) for w, bb in _dense_layers(p)], x)[:, 0] for i in range(2)])


def test_critic_loss_matches_hand_computation():
    cfg, state, batch = _setup()
    key = jax.random.PRNGKey(7)
    loss, _ = td3bc.critic_loss(state.critic.params, state, batch, key, cfg)
    o, a, o2 = (np.asarray(x, np.float64) for x in (batch.observations, batch.actions, batch.next_observations))
    noise = np.clip(0.2 * np.asarray(jax.random.normal(key, batch.actions.shape), np.float64), -0.5, 0.5)
    a2 = np.clip(_actor_np(state.actor_target, o2) + noise, -1, 1)
    q_next = _critics_np(state.critic_target, o2, a2).min(0)
    y = np.asarray(batch.rewards) + 0.9 * (1 - np.asarray(batch.terminals)) * q_next
    q = _critics_np(state.critic.params, o, a)
    expected = ((q[0] - y) ** 2).mean() + ((q[1] - y) ** 2).mean()
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_actor_loss_matches_hand_computation_and_bc_weights():
    cfg, state, batch = _setup()
    loss, info = td3bc.actor_loss(state.actor.params, state, batch, cfg)
    o, a = np.asarray(batch.observations, np.float64), np.asarray(batch.actions, np.float64)
    pi = _actor_np(state.actor.params, o)
    q1 = _critics_np(state.critic.params, o, pi)[0]
    lmbda = 2.5 / np.abs(q1).mean()
    bc = ((pi - a) ** 2).mean(-1)
    np.testing.assert_allclose(float(loss), -lmbda * q1.mean() + bc.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(info["lambda"]), lmbda, rtol=1e-5)
    w = jnp.asarray([0.0, 1.0, 0.5, 0.0, 1.0])
    loss_w, _ = td3bc.actor_loss(state.actor.params, state, batch, cfg, bc_weights=w)
    np.testing.assert_allclose(float(loss_w), -lmbda * q1.mean() + (bc * np.asarray(w)).mean(), rtol=1e-5)


def test_actor_and_targets_move_only_every_policy_freq_steps():
    cfg, state, batch = _setup()
    s1, _ = td3bc.update(state, batch, jax.random.PRNGKey(0), jnp.int32(1), cfg)  # odd step: critic only
    same = jax.tree_util.tree_map(lambda x, y: bool(jnp.all(x == y)), s1.actor.params, state.actor.params)
    assert all(jax.tree_util.tree_leaves(same))
    # nor do the actor's Adam moments and counts: a skipped step is not an Adam step with a zero gradient
    same = jax.tree_util.tree_map(lambda x, y: bool(jnp.all(x == y)), (s1.actor.opt_state, s1.actor.step),
                                  (state.actor.opt_state, state.actor.step))
    assert all(jax.tree_util.tree_leaves(same))
    assert all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda x, y: bool(jnp.all(x == y)), s1.critic_target, state.critic_target)))
    s2, _ = td3bc.update(state, batch, jax.random.PRNGKey(0), jnp.int32(2), cfg)  # even step: actor + targets
    moved = jax.tree_util.tree_map(lambda x, y: bool(jnp.any(x != y)), s2.actor.params, state.actor.params)
    assert all(jax.tree_util.tree_leaves(moved))
    assert int(s2.actor.step) == int(state.actor.step) + 1
    # Polyak: target' = 0.995 * target + 0.005 * online (online critic after its step)
    expect = jax.tree_util.tree_map(lambda t, o: 0.995 * t + 0.005 * o, state.critic_target, s2.critic.params)
    for x, y in zip(jax.tree_util.tree_leaves(expect), jax.tree_util.tree_leaves(s2.critic_target)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)
