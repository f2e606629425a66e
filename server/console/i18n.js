// Labels in Chinese (zh-CN, the default) and English; the choice is kept in this
// browser (localStorage) and switched with one button.

const zh = {
  'nav.search': '检索', 'nav.companions': '伴随分析', 'nav.collision': '碰撞分析',
  'nav.community': '小区研判', 'nav.watch': '布控告警', 'nav.audit': '审计日志',
  'lang.other': 'English', 'signout': '退出',
  'signin.title': '登录', 'signin.key': 'API 密钥', 'signin.go': '登录',
  'signin.hint': '请输入管理员发放的密钥（sl_…）。密钥只保存在本标签页中。',
  'who.role.admin': '管理员', 'who.role.investigate': '研判', 'who.role.ingest': '接入',
  'who.all': '全部小区', 'who.open': '本机免密（--no-auth）',
  'who.ingestOnly': '该密钥只能接入数据，不能使用控制台。',
  'kind': '类型', 'kind.any': '全部', 'kind.vehicle': '车辆', 'kind.face': '人脸', 'kind.access': '门禁',
  'kind.person': '人员', 'kind.nonmotor': '非机动车',
  'from': '开始时间', 'to': '结束时间', 'community': '小区', 'communities': '小区', 'device': '设备',
  'subject': '对象', 'time': '时间', 'direction': '方向', 'dir.in': '进', 'dir.out': '出', 'dir.unknown': '未知',
  'count': '次数', 'first': '首次出现', 'last': '最后出现', 'days': '天数', 'devices': '设备数',
  'hits': '同行次数', 'lift': '提升度', 'limit': '最多', 'run': '查询', 'none': '没有结果',
  'search.title': '对象检索', 'search.q': '车牌 / 人脸档案号 / 卡号', 'search.mode': '方式',
  'mode.exact': '精确', 'mode.prefix': '前缀', 'mode.wildcard': '通配（? *）', 'mode.fuzzy': '模糊（识别纠错）',
  'search.distance': '编辑距离', 'distance': '距离', 'search.results': '共 {0} 个对象', 'search.capped': '只显示最接近的 {0} 个：请缩小条件（类型、方式）',
  'subject.title': '对象档案', 'subject.track': '行车轨迹', 'subject.timeline': '每日时间线',
  'subject.companions': '伴随分析', 'subject.overnight': '落脚点', 'subject.csv': '导出 CSV',
  'subject.pictures': '图片', 'subject.next': '下一页', 'subject.prev': '上一页',
  'subject.page': '第 {0} 页', 'subject.perPage': '每页', 'subject.stays': '停留',
  'subject.nights': '夜间落脚', 'subject.bases': '落脚小区', 'subject.date': '日期',
  'subject.evening': '晚间', 'subject.morning': '次日早晨', 'subject.event': '事件',
  'subject.exporting': '正在导出 {0} 条…', 'subject.shown': '已显示 {0} 条',
  'subject.staysTruncated': '停留记录过多，仅显示前 10,000 条',
  'comp.title': '伴随分析（同行 / 人车关联）', 'comp.window': '时间窗（±）', 'comp.scope': '范围',
  'scope.device': '同一设备', 'scope.community': '同一小区', 'comp.candidateKind': '伴随对象类型',
  'comp.minCount': '最少同行次数', 'comp.compare': '对比', 'comp.rank': '排名',
  'comp.side': '匹配的过车记录对比', 'comp.target': '目标', 'comp.companion': '伴随对象', 'comp.delta': '时间差（秒）',
  'coll.title': '碰撞分析', 'coll.k': '至少满足条件数', 'coll.add': '添加条件', 'coll.remove': '删除',
  'coll.place': '地点', 'coll.codes': '编码（逗号分隔）', 'coll.byCommunity': '按小区', 'coll.byDevice': '按设备',
  'coll.matched': '满足的条件', 'coll.n': '条件 {0}',
  'comm.title': '小区研判', 'comm.frequency': '频繁出入', 'comm.nocturnal': '昼伏夜出', 'comm.firstSeen': '首次出现',
  'comm.counts': '流量统计', 'comm.minCount': '最少次数', 'comm.minDays': '最少天数', 'comm.lookback': '回溯期',
  'comm.night': '夜间次数', 'comm.day': '白天次数', 'comm.nightDays': '夜间天数', 'comm.ratio': '夜间占比',
  'comm.by': '分组', 'comm.per': '粒度', 'per.day': '按天', 'per.hour': '按小时', 'by.community': '小区', 'by.device': '设备', 'by.kind': '类型',
  'comm.dayStart': '白天开始（时）', 'comm.dayEnd': '白天结束（时）', 'comm.minNight': '最少夜间次数', 'comm.maxDay': '最多白天次数',
  'watch.title': '布控', 'watch.name': '名称', 'watch.reason': '事由', 'watch.expires': '到期时间',
  'watch.entries': '布控对象', 'watch.type': '匹配', 'type.subject': '精确', 'type.pattern': '通配', 'type.fuzzy': '模糊',
  'watch.value': '车牌 / 对象', 'watch.addEntry': '添加对象', 'watch.create': '创建布控', 'watch.delete': '撤控', 'watch.confirmDelete': '确认撤控？',
  'watch.list': '布控列表', 'watch.created': '已创建布控 {0}', 'watch.expired': '已过期',
  'alerts.title': '实时告警', 'alerts.none': '暂无告警', 'alerts.live': '实时',
  'audit.title': '审计日志', 'audit.key': '密钥', 'audit.endpoint': '接口', 'audit.params': '参数',
  'audit.results': '结果数', 'audit.status': '状态', 'audit.after': '序号之后', 'audit.more': '加载更多',
  'audit.seq': '序号',
  'error.title': '请求失败', 'error.field': '字段', 'error.network': '无法连接服务器：{0}',
  'loading': '加载中…',
};

const en = {
  'nav.search': 'Search', 'nav.companions': 'Companions', 'nav.collision': 'Collision',
  'nav.community': 'Communities', 'nav.watch': 'Watchlists', 'nav.audit': 'Audit',
  'lang.other': '中文', 'signout': 'Sign out',
  'signin.title': 'Sign in', 'signin.key': 'API key', 'signin.go': 'Sign in',
  'signin.hint': 'Enter the key your administrator issued (sl_…). It is kept in this tab only.',
  'who.role.admin': 'admin', 'who.role.investigate': 'investigator', 'who.role.ingest': 'ingest',
  'who.all': 'all communities', 'who.open': 'open loopback server (--no-auth)',
  'who.ingestOnly': 'This key may only ingest events; it cannot use the console.',
  'kind': 'Kind', 'kind.any': 'Any', 'kind.vehicle': 'Vehicle', 'kind.face': 'Face', 'kind.access': 'Access card',
  'kind.person': 'Person', 'kind.nonmotor': 'Non-motor',
  'from': 'From', 'to': 'To', 'community': 'Community', 'communities': 'Communities', 'device': 'Device',
  'subject': 'Subject', 'time': 'Time', 'direction': 'Direction', 'dir.in': 'in', 'dir.out': 'out', 'dir.unknown': 'unknown',
  'count': 'Count', 'first': 'First seen', 'last': 'Last seen', 'days': 'Days', 'devices': 'Devices',
  'hits': 'Hits', 'lift': 'Lift', 'limit': 'Limit', 'run': 'Run', 'none': 'No results',
  'search.title': 'Search subjects', 'search.q': 'Plate / face archive id / card', 'search.mode': 'Mode',
  'mode.exact': 'Exact', 'mode.prefix': 'Prefix', 'mode.wildcard': 'Wildcard (? *)', 'mode.fuzzy': 'Fuzzy (OCR-aware)',
  'search.distance': 'Edit distance', 'distance': 'Distance', 'search.results': '{0} subjects', 'search.capped': 'Only the {0} closest are shown: narrow the search (kind, mode)',
  'subject.title': 'Subject', 'subject.track': 'Trajectory', 'subject.timeline': 'Per-day timeline',
  'subject.companions': 'Companions', 'subject.overnight': 'Overnight base', 'subject.csv': 'Export CSV',
  'subject.pictures': 'Pictures', 'subject.next': 'Next page', 'subject.prev': 'Previous page',
  'subject.page': 'Page {0}', 'subject.perPage': 'Per page', 'subject.stays': 'Stays',
  'subject.nights': 'Nights', 'subject.bases': 'Bases', 'subject.date': 'Date',
  'subject.evening': 'Evening', 'subject.morning': 'Morning', 'subject.event': 'Event',
  'subject.exporting': 'Exporting {0} rows…', 'subject.shown': '{0} rows shown',
  'subject.staysTruncated': 'Too many stays: the first 10,000 are shown',
  'comp.title': 'Companions (co-occurrence, person–vehicle)', 'comp.window': 'Window (±)', 'comp.scope': 'Scope',
  'scope.device': 'Same device', 'scope.community': 'Same community', 'comp.candidateKind': 'Candidate kind',
  'comp.minCount': 'Min count', 'comp.compare': 'Compare', 'comp.rank': 'Rank',
  'comp.side': 'Matched sightings side by side', 'comp.target': 'Target', 'comp.companion': 'Companion', 'comp.delta': 'Δ (s)',
  'coll.title': 'Collision', 'coll.k': 'At least (k of n)', 'coll.add': 'Add condition', 'coll.remove': 'Remove',
  'coll.place': 'Place', 'coll.codes': 'Codes (comma-separated)', 'coll.byCommunity': 'Communities', 'coll.byDevice': 'Devices',
  'coll.matched': 'Conditions met', 'coll.n': 'Condition {0}',
  'comm.title': 'Community views', 'comm.frequency': 'Frequent', 'comm.nocturnal': 'Nocturnal', 'comm.firstSeen': 'First seen',
  'comm.counts': 'Counts', 'comm.minCount': 'Min count', 'comm.minDays': 'Min days', 'comm.lookback': 'Lookback',
  'comm.night': 'Night', 'comm.day': 'Day', 'comm.nightDays': 'Night days', 'comm.ratio': 'Night ratio',
  'comm.by': 'By', 'comm.per': 'Per', 'per.day': 'day', 'per.hour': 'hour', 'by.community': 'community', 'by.device': 'device', 'by.kind': 'kind',
  'comm.dayStart': 'Day starts (h)', 'comm.dayEnd': 'Day ends (h)', 'comm.minNight': 'Min night', 'comm.maxDay': 'Max day',
  'watch.title': 'Watchlists', 'watch.name': 'Name', 'watch.reason': 'Reason', 'watch.expires': 'Expires',
  'watch.entries': 'Entries', 'watch.type': 'Match', 'type.subject': 'Exact', 'type.pattern': 'Wildcard', 'type.fuzzy': 'Fuzzy',
  'watch.value': 'Plate / subject', 'watch.addEntry': 'Add entry', 'watch.create': 'Create watchlist', 'watch.delete': 'Delete', 'watch.confirmDelete': 'Delete? Press again',
  'watch.list': 'Watchlists', 'watch.created': 'Watchlist {0} created', 'watch.expired': 'expired',
  'alerts.title': 'Live alerts', 'alerts.none': 'No alerts yet', 'alerts.live': 'live',
  'audit.title': 'Audit log', 'audit.key': 'Key', 'audit.endpoint': 'Endpoint', 'audit.params': 'Parameters',
  'audit.results': 'Results', 'audit.status': 'Status', 'audit.after': 'After entry', 'audit.more': 'Load more',
  'audit.seq': 'Seq',
  'error.title': 'Request failed', 'error.field': 'field', 'error.network': 'Cannot reach the server: {0}',
  'loading': 'Loading…',
};

const dictionaries = { 'zh-CN': zh, en };
let current = localStorage.getItem('sightline.lang') === 'en' ? 'en' : 'zh-CN';

/** The label `key` in the current language, `{0}`, `{1}` … replaced by `args`. */
export function t(key, ...args) {
  const s = dictionaries[current][key] ?? zh[key] ?? key;
  return s.replace(/\{(\d)\}/g, (_, i) => String(args[Number(i)] ?? ''));
}

export function lang() { return current; }

export function switchLang() {
  current = current === 'en' ? 'zh-CN' : 'en';
  localStorage.setItem('sightline.lang', current === 'en' ? 'en' : 'zh');
  document.documentElement.lang = current;
}

export const KINDS = ['vehicle', 'face', 'access', 'person', 'nonmotor'];
