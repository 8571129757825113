// Hits picked as references for a generation. They live in the tab's sessionStorage so they
// survive moving between pages; references must come from one collection, so picking from
// another collection starts over.

const KEY = "assetrag.picks";

export function picks() {
  return JSON.parse(sessionStorage.getItem(KEY) || '{"collection": null, "assets": []}');
}

function save(value) {
  sessionStorage.setItem(KEY, JSON.stringify(value));
}

export function isPicked(assetId) {
  return picks().assets.some((a) => a.asset_id === assetId);
}

// asset: {asset_id, filename, thumbnail_url}
export function pick(collection, asset) {
  const current = picks();
  const assets = current.collection === collection ? current.assets : [];
  if (!assets.some((a) => a.asset_id === asset.asset_id)) {
    const { asset_id, filename, thumbnail_url } = asset;
    assets.push({ asset_id, filename, thumbnail_url });
  }
  save({ collection, assets });
}

export function unpick(assetId) {
  const current = picks();
  save({ ...current, assets: current.assets.filter((a) => a.asset_id !== assetId) });
}

export function clearPicks() {
  save({ collection: null, assets: [] });
}
