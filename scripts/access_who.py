"""The canonical "Who:" line of an RPC's comment, rendered from its access declaration
(nest.access.v1.method): the same rule as AccessDeclarationTests in Swift."""

ROLE_NAMES = {"ROLE_ISV": "isv", "ROLE_DISTRIBUTOR": "distributor", "ROLE_CUSTOMER": "customer"}
PHRASES = {
  "OWNER": "the {r}'s owner", "BUYER": "the {r}'s buyer", "SELLER": "the {r}'s seller",
  "PARTY": "a party to the {r}", "ISV": "the {r}'s ISV", "DISTRIBUTOR": "the {r}'s distributor",
  "CUSTOMER": "the {r}'s customer", "RESOURCE_OWNER": "the {r}'s resource owner",
  "VIEWER": "one who may see the {r}",
}


def who_line(d):
  if d.get("open"):
    return "Who: anyone, without credentials."
  parties = [ROLE_NAMES[r] for r in d["roles"] if r in ROLE_NAMES]
  clauses = []
  if parties:
    clause = parties[0] if len(parties) == 1 else ", ".join(parties[:-1]) + " or " + parties[-1]
    if d.get("relation"):
      clause += " as " + PHRASES[d["relation"]].format(r=d["resource"])
    clauses.append(clause)
  if "ROLE_OPERATOR" in d["roles"]:
    clauses.append("operator")
  if "ROLE_SERVICE" in d["roles"]:
    clauses.append("service (" + ", ".join(d["services"]) + ")")
  return "Who: " + "; ".join(clauses) + "."
