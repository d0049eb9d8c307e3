"""Re-encryption: every sealed (or plaintext) profile and context vector rewritten under the
active key, the last step of a key rotation (:mod:`~bandit_engine.store.crypto`)."""

from __future__ import annotations

from ..errors import ConfigError
from .connection import LogConnection
from .crypto import ENV_KEY, open_text, open_vector, profile_aad, seal_text, seal_vector, x_aad

__all__ = ["reencrypt_log"]

_BATCH = 1000


def reencrypt_log(log: LogConnection) -> dict[str, int]:
    """Rewrite every decision's ``x`` and every profile not already under the active key.

    Rows are opened with whichever configured key sealed them (plaintext rows written before
    encryption was switched on are sealed too) and rewritten in batches of 1,000 per
    transaction, so a server may keep writing meanwhile. Afterwards the old keys can be removed
    from ``BANDIT_ENCRYPTION_OLD_KEYS``. Returns the number of rows rewritten per table.
    """
    cipher = log._cipher
    if cipher is None:
        raise ConfigError(f"re-encryption needs the active key in {ENV_KEY}", field=ENV_KEY)
    active = cipher.active_id
    done = {"decisions": 0, "profiles": 0}
    last = 0
    while True:
        with log.transaction():
            rows = log._conn.execute(
                "SELECT seq, decision_id, x, x_dim FROM decisions WHERE seq > ? ORDER BY seq"
                " LIMIT ?",
                (last, _BATCH),
            ).fetchall()
            for seq, decision_id, x, dim in rows:
                stored = bytes(x)
                if stored[1:5] == active and len(stored) != 8 * int(dim):
                    continue
                raw = open_vector(cipher, stored, int(dim), x_aad(decision_id))
                assert raw is not None
                log._conn.execute(
                    "UPDATE decisions SET x = ? WHERE seq = ?",
                    (seal_vector(cipher, raw, x_aad(decision_id)), seq),
                )
                done["decisions"] += 1
        if len(rows) < _BATCH:
            break
        last = int(rows[-1][0])
    with log.transaction():
        for user, platform, fields in log._conn.execute(
            'SELECT "user", platform, fields FROM profiles'
        ).fetchall():
            pseudonym = bytes(user).hex()  # the profile table's 32-byte key (schema step 5)
            aad = profile_aad(pseudonym, str(platform))
            text = open_text(cipher, str(fields), aad, "profiles.fields")
            log._conn.execute(
                'UPDATE profiles SET fields = ? WHERE "user" = ? AND platform = ?',
                (seal_text(cipher, text, aad), user, platform),
            )
            done["profiles"] += 1
    return done
